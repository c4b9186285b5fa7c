"""KMS: a key named by its ARN where AWS takes "the key ID or key ARN".

AWS (KMS API reference, ScheduleKeyDeletion, CancelKeyDeletion: ``KeyId`` is a key ID or a key ARN).
moto 5.2.5 looks the ARN up as an ID and answers 500 (``KeyError``): ``amazon.aws.kms_key state=absent``
passes the ARN. The ARN is reduced to the key ID before moto sees it.
"""

from __future__ import annotations


def _key_id(key_id):
    return key_id.rsplit("/", 1)[-1] if isinstance(key_id, str) and key_id.startswith("arn:") and ":key/" in key_id else key_id


def install(context):  # noqa: ARG001 - every rule module takes the context
    from moto.kms.models import KmsBackend

    for name in ("schedule_key_deletion", "cancel_key_deletion"):
        original = getattr(KmsBackend, name)

        def by_id(self, key_id, *args, _original=original, **kwargs):
            return _original(self, _key_id(key_id), *args, **kwargs)

        setattr(KmsBackend, name, by_id)
