"""``python -m sandbox``: start, stop and use the local AWS sandbox.

    python -m sandbox start [--state-dir DIR]   start moto on a free loopback port and seed the world
    python -m sandbox env   [--state-dir DIR]   print the shell exports that point AWS tools at it
    python -m sandbox stop  [--state-dir DIR]   stop it
    python -m sandbox run -- CMD ...            start a private sandbox, run CMD inside it, stop it

Inside a sandbox run, boto3, the AWS CLI and amazon.aws modules all talk to the sandbox:
``AWS_ENDPOINT_URL`` points at it, the credentials are the sandbox operator's access key (a user
carrying docs/iam's policies, which AWS would reject), and the shared config and credential files are
hidden, so a real profile cannot be picked up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from . import world

DEFAULT_STATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".build", "sandbox")
SANDBOX_ACCOUNT = "123456789012"  # moto's account: no real account has it
# The administrator: the account itself (the sandbox's own set-up, the tests' seeding and reading of the world).
ADMINISTRATOR_KEY = "sandbox"
# The operator: who runs the playbooks and the modules, with the policies docs/iam/ documents for them.
OPERATOR_USER = "ec2spot-operator"
OPERATOR_RECORD = "operator.json"
POLICY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "iam")
# Managed policy name -> file of docs/iam/: the modules' calls and what the roles' deploy needs (two files: one
# managed policy holds at most 6,144 characters).
OPERATOR_POLICIES = {
    "ec2spot-operator-modules": "modules-policy.json",
    "ec2spot-operator-deploy": "deploy-policy.json",
    "ec2spot-operator-deploy-fleet": "deploy-fleet-policy.json",
}
# Variables that could steer an AWS SDK towards a real account; removed inside a sandbox run.
REAL_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_URL",
    "EC2_URL",
)


def sandbox_env(endpoint, state_dir):
    """The environment that points every AWS client at the sandbox and nowhere else, signing as the operator.

    The credentials are the operator's access key that ``start`` created (``operator_credentials``): playbooks run as
    a user carrying docs/iam/'s policies, not as the administrator. A state directory without an operator (the
    benchmarks' in-thread server, which seeds the world itself and runs with IAM off) keeps the administrator key."""
    host = urllib.parse.urlparse(endpoint).hostname
    if host != "127.0.0.1":
        raise SystemExit(f"refusing: sandbox endpoint {endpoint} is not on loopback")
    operator = operator_credentials(state_dir) or {
        "AccessKeyId": ADMINISTRATOR_KEY,
        "SecretAccessKey": ADMINISTRATOR_KEY,
    }
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": operator["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": operator["SecretAccessKey"],
        "AWS_REGION": world.REGION,
        "AWS_DEFAULT_REGION": world.REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "EC2SPOT_SANDBOX": "1",
        "EC2SPOT_SANDBOX_ENDPOINT": endpoint,
        "EC2SPOT_SANDBOX_ACCOUNT": SANDBOX_ACCOUNT,
        "EC2SPOT_SANDBOX_WORLD": os.path.join(state_dir, "world.json"),
        "EC2SPOT_SANDBOX_STATE_DIR": state_dir,
    }


def operator_credentials(state_dir):
    """The operator's access key (``{"UserName", "Arn", "AccessKeyId", "SecretAccessKey"}``) that ``start`` created
    in the sandbox of ``state_dir``, or None when it created none."""
    path = os.path.join(state_dir, OPERATOR_RECORD)
    return _read_json(path) if os.path.exists(path) else None


def create_operator(session, endpoint, state_dir):
    """Create the operator user with the policies of docs/iam/ (OPERATOR_POLICIES) attached as customer managed
    policies made from the files as they are now (a change to docs/iam/ is what the next sandbox enforces), give it
    an access key and record the key in ``state_dir``. The administrator (``session``) signs these calls: creating
    the operator is the account's doing, not the operator's."""
    iam = session.client("iam", endpoint_url=endpoint)
    user = iam.create_user(UserName=OPERATOR_USER)["User"]
    for policy_name, file_name in OPERATOR_POLICIES.items():
        with open(os.path.join(POLICY_DIR, file_name), encoding="utf-8") as handle:
            document = handle.read()
        arn = iam.create_policy(PolicyName=policy_name, PolicyDocument=document)["Policy"]["Arn"]
        iam.attach_user_policy(UserName=OPERATOR_USER, PolicyArn=arn)
    key = iam.create_access_key(UserName=OPERATOR_USER)["AccessKey"]
    record = {
        "UserName": OPERATOR_USER,
        "Arn": user["Arn"],
        "AccessKeyId": key["AccessKeyId"],
        "SecretAccessKey": key["SecretAccessKey"],
    }
    with open(os.path.join(state_dir, OPERATOR_RECORD), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    return record


def apply_env(env):
    merged = {k: v for k, v in os.environ.items() if k not in REAL_AWS_VARIABLES}
    merged.update(env)
    return merged


def _read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


DEFAULT_SCALE = 100.0  # modeled seconds per real second: a 30-minute AMI takes 18 s


def start(state_dir, timeout=30.0, scale=DEFAULT_SCALE):
    """Start the server, wait until it answers, seed the world and create the operator (``create_operator``).
    Returns the server record."""
    os.makedirs(state_dir, exist_ok=True)
    record_path = os.path.join(state_dir, "server.json")
    if os.path.exists(record_path):
        record = _read_json(record_path)
        if _alive(record):
            return record
        os.remove(record_path)
    log = open(os.path.join(state_dir, "server.log"), "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.server", "--ready-file", record_path, "--scale", str(scale)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=apply_env(
            {
                "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                "EC2SPOT_SANDBOX_STATE_DIR": state_dir,
                # IAM enforced unless the caller says off (sandbox/README.md, "IAM")
                "EC2SPOT_SANDBOX_IAM": os.environ.get("EC2SPOT_SANDBOX_IAM") or "enforce",
            }
        ),
    )
    deadline = time.monotonic() + timeout
    while not os.path.exists(record_path):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"sandbox server did not start; see {os.path.join(state_dir, 'server.log')}")
        time.sleep(0.05)
    record = _read_json(record_path)
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=ADMINISTRATOR_KEY, aws_secret_access_key=ADMINISTRATOR_KEY, region_name=world.REGION
    )
    account = session.client("sts", endpoint_url=record["endpoint"]).get_caller_identity()["Account"]
    if account != SANDBOX_ACCOUNT:
        raise SystemExit(f"refusing: the sandbox endpoint answered as account {account}")
    seeded = world.seed(session.client("ec2", endpoint_url=record["endpoint"]))
    create_operator(session, record["endpoint"], state_dir)
    env = sandbox_env(record["endpoint"], state_dir)
    with open(env["EC2SPOT_SANDBOX_WORLD"], "w", encoding="utf-8") as handle:
        json.dump(seeded, handle, indent=2)
    with open(os.path.join(state_dir, "env.sh"), "w", encoding="utf-8") as handle:
        handle.write("".join(f"unset {name}\n" for name in REAL_AWS_VARIABLES))
        handle.write("".join(f"export {k}={v}\n" for k, v in env.items()))
    return record


def _alive(record):
    try:
        with urllib.request.urlopen(record["endpoint"] + "/_sandbox/health", timeout=2) as answer:
            return json.load(answer).get("pid") == record["pid"]
    except OSError:
        return False


def stop(state_dir):
    record_path = os.path.join(state_dir, "server.json")
    if not os.path.exists(record_path):
        return
    record = _read_json(record_path)
    try:
        os.killpg(record["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    os.remove(record_path)


def run(command, scale=DEFAULT_SCALE):
    """Run ``command`` inside a private sandbox; returns its exit code."""
    state_dir = tempfile.mkdtemp(prefix="ec2spot-sandbox-")
    try:
        record = start(state_dir, scale=scale)
        env = apply_env(sandbox_env(record["endpoint"], state_dir))
        return subprocess.call(command, env=env)
    finally:
        stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("start", "stop", "env", "run"))
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    parser.add_argument(
        "--scale",
        type=float,
        default=DEFAULT_SCALE,
        help="modeled seconds per real second (0: a manual clock moved through the clock control)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is the command to run; options may come before or after the action.
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.action == "run":
        if not command:
            parser.error("run needs a command: python -m sandbox run -- CMD ...")
        return run(command, scale=args.scale)
    if args.action == "start":
        record = start(args.state_dir, scale=args.scale)
        print(f"sandbox AWS at {record['endpoint']}; load it with: . {os.path.join(args.state_dir, 'env.sh')}")
    elif args.action == "env":
        print(open(os.path.join(args.state_dir, "env.sh"), encoding="utf-8").read(), end="")
    else:
        stop(args.state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
