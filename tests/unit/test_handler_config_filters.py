"""The filters that let roles and playbooks ask the handler's own parser instead of copying its schema."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ec2spot.autorecover.plugins.filter.handler_config_error import handler_config_error
from ansible_collections.ec2spot.autorecover.plugins.filter.handler_section_keys import handler_section_keys
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import standby, watchdog

TOPIC = "arn:aws:sns:us-east-1:123456789012:cp"


def service(**settings):
    return {"topic_arn": TOPIC, "services": [{"name": "pg", "lineage": "pgdata", "group": "pg", **settings}]}


@pytest.mark.parametrize(
    "document, refusal",
    [
        (service(), ""),
        ('{"topic_arn": "%s", "services": [{"name": "pg", "lineage": "pgdata"}]}' % TOPIC, ""),
        ({"topic_arn": TOPIC, "services": []}, "handler configuration needs a non-empty 'services' list"),
        ("{not json", "handler configuration is not JSON"),
        (
            {"topic_arn": TOPIC, "services": [{"name": "a", "lineage": "pgdata"}, {"name": "b", "lineage": "pgdata"}]},
            "lineage pgdata is configured twice",
        ),
        (
            service(standby={"instance_id": "i-0123456789abcdef0", "tags": {"role": "standby"}}),
            "exactly one of instance_id or tags",
        ),
        (service(watchdog={"mode": "reboot", "surprise": 1}), "unknown keys: surprise"),
    ],
)
def test_the_handlers_own_parser_decides_and_its_words_are_returned(document, refusal):
    found = handler_config_error(document)
    assert (found == "") if refusal == "" else (refusal in found), found


def test_section_keys_are_the_parsers_own():
    assert handler_section_keys("standby") == sorted(standby.SECTION_KEYS)
    assert handler_section_keys("watchdog") == sorted(watchdog.SECTION_KEYS)
    with pytest.raises(AnsibleFilterError, match="not a section"):
        handler_section_keys("address")
