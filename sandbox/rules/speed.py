"""Not an AWS rule: the same answers as moto, faster where moto's cost grows with the account.

moto looks up one resource's tags (every ``Describe*`` with a tag filter, every response carrying
tags) by scanning every tag of the region with a regular expression per entry: with a few hundred
tagged resources each describe costs tens of milliseconds, under the sandbox's one lock, and the
fleet benchmark measured the sandbox instead of the handler. A lookup of one exact resource id is
answered from moto's own tag dictionary, in the shape ``describe_tags`` returns.

moto's server also lists its own package directory (a ``stat`` per module) on every request to find
the backend for a host name; the list never changes while the server runs, so it is read once.
"""

from __future__ import annotations

WILDCARDS = set("*?")


def install(context):  # noqa: ARG001 - every rule module takes the context
    from moto.ec2.models.tags import TagBackend
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    moto_describe_tags = TagBackend.describe_tags

    def describe_tags(self, filters=None):
        ids = (filters or {}).get("resource-id")
        if filters and set(filters) == {"resource-id"} and len(ids) == 1 and not WILDCARDS & set(ids[0]):
            resource_id = ids[0]
            resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
            return [
                {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
                for key, value in self.tags.get(resource_id, {}).items()
            ]
        return moto_describe_tags(self, filters)

    TagBackend.describe_tags = describe_tags

    from moto import backends
    from moto.moto_server import werkzeug_app

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    werkzeug_app.backends.list_of_moto_modules = backends.list_of_moto_modules
