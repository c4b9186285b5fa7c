"""Launch templates (sandbox/rules/launch_templates.py): the template's own tags stay off its versions' data."""

import uuid


def test_a_template_tagged_on_create_keeps_its_tags_off_its_data(ec2):
    """CreateLaunchTemplate's TagSpecification tags the template (EC2 API reference): the version's data is what the
    request gave, so amazon.aws.ec2_launch_template finds it unchanged on the next run and makes no new version."""
    name = f"lt-{uuid.uuid4().hex[:8]}"
    launched = [{"ResourceType": "instance", "Tags": [{"Key": "ec2spot:lineage", "Value": "pgdata"}]}]
    data = {"InstanceType": "m6i.large", "TagSpecifications": launched}
    own = [{"ResourceType": "launch-template", "Tags": [{"Key": "ec2spot:managed-by", "Value": "ec2spot.autorecover"}]}]
    template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data, TagSpecifications=own)
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateName=name)["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"] == data
    assert template["LaunchTemplate"]["Tags"] == own[0]["Tags"]
    (described,) = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    assert described["Tags"] == own[0]["Tags"]

    bare = f"lt-{uuid.uuid4().hex[:8]}"
    ec2.create_launch_template(LaunchTemplateName=bare, LaunchTemplateData={"InstanceType": "m6i.large"},
                               TagSpecifications=own)  # fmt: skip
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateName=bare)["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"] == {"InstanceType": "m6i.large"}
