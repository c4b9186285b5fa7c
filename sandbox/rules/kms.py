"""KMS: keys named by their ARN, and what a key's state does to the EBS volumes made with it.

AWS:

* KMS API reference, ScheduleKeyDeletion, CancelKeyDeletion, DisableKey, EnableKey: ``KeyId`` is a key ID or a key
  ARN. moto 5.2.5 looks the ARN up as an ID and answers 500 (``KeyError``): ``amazon.aws.kms_key state=absent`` passes
  the ARN. The ARN is reduced to the key ID before moto sees it.
* EBS user guide "Amazon EBS encryption": a snapshot of an encrypted volume is encrypted with the volume's KMS key, and
  a volume created from an encrypted snapshot is encrypted with the snapshot's key unless ``KmsKeyId`` names another.
  moto 5.2.5 gives such snapshots and volumes no key: the sandbox gives them the key AWS would.
* KMS developer guide "Key states of AWS KMS keys", "Enable and disable keys", "How unusable KMS keys affect data
  keys": a ``Disabled`` key, or one ``PendingDeletion``, cannot be used in any cryptographic operation, and EBS needs
  the key to protect the new volume's data key; "Cancel key deletion": a cancelled deletion leaves the key
  ``Disabled`` until ``EnableKey``. EC2 API reference CreateVolume, ``KmsKeyId``: "Amazon Web Services authenticates
  the KMS key asynchronously. Therefore, if you specify an ID, alias, or ARN that is not valid, the action can appear
  to complete, but eventually fails."

So ``CreateVolume`` of a volume whose key (``KmsKeyId``, else its encrypted snapshot's key) is not ``Enabled``, or
does not exist, is **not** refused: it answers the volume ``creating``, as AWS does, and ``kms_volume_check`` modeled
seconds later (default ``CHECK_SECONDS``) the volume is gone: ``DescribeVolumes`` of its id answers
``InvalidVolume.NotFound``. AWS documents only that the call "eventually fails"; a volume that vanishes this way
(rather than one left in the ``error`` state) is what users report of it (aws-cli issue 2604, aws-ebs-csi-driver
issues 2685 and 3010), and the sandbox does the same. While ``creating`` the volume cannot be attached
(``IncorrectState``). Each failure is recorded (``records`` name ``kms_volume_failures``: volume, key, key state,
snapshot, zone, reason ``Client.InvalidKMSKey.InvalidState``, time). ``EnableKey`` makes the next ``CreateVolume`` work.

Not modeled: what an unusable key does to volumes that already exist (a detached one could not be attached again), to
instances launched with encrypted volumes, and to snapshot copies.
"""

from __future__ import annotations

CHECK_SECONDS = 2.0
USABLE = "Enabled"
REASON = "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state"


def _key_id(key_id):
    return (
        key_id.rsplit("/", 1)[-1]
        if isinstance(key_id, str) and key_id.startswith("arn:") and ":key/" in key_id
        else key_id
    )


def key_state(account_id, region, key_ref):
    """The state of the key ``key_ref`` names (id, ARN, alias or alias ARN); None when it names no key."""
    from moto.core.exceptions import ServiceException
    from moto.kms.models import kms_backends

    try:
        return kms_backends[account_id][region].describe_key(key_ref).key_state
    except (ServiceException, KeyError, AttributeError, TypeError):  # moto's KMS lookups fail in all of these ways
        return None


def _patch_key_deletion():
    from moto.kms.models import KmsBackend

    for name in ("schedule_key_deletion", "cancel_key_deletion", "disable_key", "enable_key"):
        original = getattr(KmsBackend, name)

        def by_id(self, key_id, *args, _original=original, **kwargs):
            return _original(self, _key_id(key_id), *args, **kwargs)

        setattr(KmsBackend, name, by_id)


def _patch_key_inheritance():
    """Snapshots take their volume's key; volumes take their snapshot's key unless given one."""
    from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot

    snapshot_init = Snapshot.__init__
    create_volume = EBSBackend.create_volume

    def init(self, *args, **kwargs):
        snapshot_init(self, *args, **kwargs)
        if self.encrypted and not self.kms_key_id and self.volume is not None:
            self.kms_key_id = getattr(self.volume, "kms_key_id", None)

    def create_volume_with_key(self, size, zone_name, snapshot_id=None, encrypted=False, kms_key_id=None, **kwargs):
        if snapshot_id and not kms_key_id:
            snapshot = self.get_snapshot(snapshot_id)
            if snapshot.encrypted and snapshot.kms_key_id:
                encrypted, kms_key_id = True, snapshot.kms_key_id
        return create_volume(
            self, size, zone_name, snapshot_id=snapshot_id, encrypted=encrypted, kms_key_id=kms_key_id, **kwargs
        )

    Snapshot.__init__ = init
    EBSBackend.create_volume = create_volume_with_key


def _patch_volume_state():
    """A volume the sandbox holds in ``creating`` says so (moto knows only available and in-use)."""
    from moto.ec2.models.elastic_block_store import Volume

    moto_status = Volume.status

    def status(self):
        return self.__dict__.get("sandbox_state") or moto_status.fget(self)

    Volume.status = property(status)


def _patch_create_volume(context):
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    respond = ElasticBlockStore.create_volume

    def create_volume(self):
        answer = respond(self)
        volume = answer.result if hasattr(answer, "result") else None
        if volume is not None and volume.encrypted:
            state = key_state(self.current_account, self.region, volume.kms_key_id)
            if state != USABLE:
                fail_later(context, self.ec2_backend, volume, state)
        return answer

    ElasticBlockStore.create_volume = create_volume


def fail_later(context, ec2_backend, volume, state):
    """The volume is ``creating`` until EBS finds its key unusable; then it is gone."""
    volume.sandbox_state = "creating"

    def vanish():
        if ec2_backend.volumes.get(volume.id) is not volume:
            return
        ec2_backend.volumes.pop(volume.id)
        context.record(
            "kms_volume_failures",
            {
                "volume_id": volume.id,
                "kms_key_id": volume.kms_key_id,
                "key_state": state,
                "snapshot_id": volume.snapshot_id or None,
                "zone": volume.zone.name,
                "reason": REASON,
                "at": context.now().isoformat(),
            },
        )

    seconds = float(context.latency.get("kms_volume_check", CHECK_SECONDS))
    context.after(seconds, vanish, f"volume {volume.id}: its KMS key is {state or 'not found'}")


def install(context):
    context.latency.setdefault("kms_volume_check", CHECK_SECONDS)
    _patch_key_deletion()
    _patch_key_inheritance()
    _patch_volume_state()
    _patch_create_volume(context)
