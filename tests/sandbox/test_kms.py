"""KMS key deletion by ARN (sandbox/rules/kms.py)."""


def test_a_key_is_scheduled_for_deletion_and_back_by_its_arn(aws):
    kms = aws("kms")
    key = kms.create_key()["KeyMetadata"]
    scheduled = kms.schedule_key_deletion(KeyId=key["Arn"], PendingWindowInDays=7)
    assert scheduled["KeyId"].endswith(key["KeyId"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    kms.cancel_key_deletion(KeyId=key["Arn"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"
