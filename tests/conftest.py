"""Shared test set-up: never let a test reach a real AWS account."""

import os

# Dummy credentials and no shared config: whatever a test does, it cannot authenticate to AWS.
for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(key, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        # moto otherwise loads thousands of public AMIs into every fresh backend (0.5 s a test).
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }
)
