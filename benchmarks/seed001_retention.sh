#!/bin/bash
# The retention half of seed 001's nightly script (seeds/001, "backup-ami.sh"), verbatim from
# "# 7일 이상 지난 AMI 삭제" (delete AMIs older than 7 days) to its end. The first half (IMDS identity and
# create-image) is left out: the benchmark measures retention only. make bench points it at the
# sandbox through AWS_ENDPOINT_URL and gives it LOG_FILE.
LOG_FILE="${LOG_FILE:-/dev/null}"

# 7일 이상 지난 AMI 삭제
echo "$(date): 오래된 AMI 정리 시작" >> $LOG_FILE
# 7일 전 날짜 계산
OLD_DATE=$(date -d "7 days ago" +%Y%m%d)

# 소유한 모든 AMI 목록 가져오기
OLD_AMIS=$(aws ec2 describe-images \
  --owners self \
  --filters "Name=name,Values=k8s-master-*" "Name=tag:AutoBackup,Values=true" \
  --query "Images[?CreationDate<='${OLD_DATE}T00:00:00.000Z'].ImageId" \
  --output text)

# 오래된 AMI가 있으면 삭제
if [ ! -z "$OLD_AMIS" ]; then
  for OLD_AMI in $OLD_AMIS; do
    echo "$(date): 오래된 AMI 삭제 중: $OLD_AMI" >> $LOG_FILE
    
    # 관련 스냅샷 ID 찾기
    SNAPSHOTS=$(aws ec2 describe-images \
      --image-ids "$OLD_AMI" \
      --query 'Images[0].BlockDeviceMappings[*].Ebs.SnapshotId' \
      --output text)
    
    # AMI 등록 취소
    aws ec2 deregister-image --image-id "$OLD_AMI"
    echo "$(date): AMI 등록 취소 완료: $OLD_AMI" >> $LOG_FILE
    
    # 관련 스냅샷 삭제
    for SNAPSHOT in $SNAPSHOTS; do
      echo "$(date): 스냅샷 삭제 중: $SNAPSHOT" >> $LOG_FILE
      aws ec2 delete-snapshot --snapshot-id "$SNAPSHOT"
    done
  done
else
  echo "$(date): 삭제할 오래된 AMI가 없습니다" >> $LOG_FILE
fi

