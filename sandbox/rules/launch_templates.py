"""Launch templates: the template's own tags are not part of its versions.

AWS:

* EC2 API reference, CreateLaunchTemplate: ``TagSpecification.N`` tags the launch template itself (resource type
  ``launch-template``), while ``LaunchTemplateData.TagSpecifications`` (``LaunchTemplateTagSpecificationRequest``)
  holds the tags the template applies to what it launches (instances, volumes, network interfaces, Spot requests...);
  ``DescribeLaunchTemplateVersions`` answers the version's data as it was given.

moto 5.2.5 appends the request's ``TagSpecification.N`` to the first version's ``LaunchTemplateData.TagSpecifications``
(as a ``launch-template`` entry): a template tagged on create then differs from the data it was created with, and
``amazon.aws.ec2_launch_template``, which compares the newest version's data with the task's, makes a new version on
every run. The rule leaves the template's tags on the template (moto stores them there too) and out of its data.
"""

from __future__ import annotations

# The resource type of the template itself: never one a template's data tags (LaunchTemplateTagSpecificationRequest).
TEMPLATE = "launch-template"


def _patch_create():
    from moto.ec2.models.launch_templates import LaunchTemplateBackend

    create = LaunchTemplateBackend.create_launch_template

    def create_launch_template(self, name, description, template_data, tag_spec, *args, **kwargs):
        specs = template_data.get("TagSpecifications") if isinstance(template_data, dict) else None
        if specs:
            kept = [spec for spec in specs if not (isinstance(spec, dict) and spec.get("ResourceType") == TEMPLATE)]
            template_data = dict(template_data)
            if kept:
                template_data["TagSpecifications"] = kept
            else:
                del template_data["TagSpecifications"]
        return create(self, name, description, template_data, tag_spec, *args, **kwargs)

    LaunchTemplateBackend.create_launch_template = create_launch_template


def install(context):  # noqa: ARG001 - every rule module takes the sandbox's context
    _patch_create()
