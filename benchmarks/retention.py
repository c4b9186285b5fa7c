"""Retention over 1,000 daily AMIs (with their snapshots): ours, the amazon.aws peer, seed 001's script.

One sandbox server runs in this process (scale 1: modeled time is the wall clock, which the seed's
``date -d "7 days ago"`` also reads). Each tool gets its own lineage of ``AMIS`` daily backups, one a day
going back ``AMIS`` days, each an AMI and the data volume's snapshot set, taken by the core's
``backup_instance`` and then backdated in moto; the seed's set is also named ``k8s-master-<date>`` and
tagged ``AutoBackup=true`` as seed 001 names and tags its AMIs. Policy for all three: keep 7 days.

* **ours**: one ``ec2spot.autorecover.spot_backup`` task, retention alone (``backup: false``): it deletes
  the AMIs (one ``DeregisterImage`` with ``DeleteAssociatedSnapshots`` each) and the volume snapshot sets;
* **peer**: what a user writes with amazon.aws: ``ec2_ami_info`` of the lineage, then ``ec2_ami
  state=absent delete_snapshot=true`` in a loop over the AMIs older than 7 days;
* **seed 001**: the retention half of its bash script (``seed001_retention.sh``) with the AWS CLI.

The peer and the seed delete AMIs and their snapshots only, and leave each backup's volume snapshot set
behind (``*_snapshots_left``); ours deletes those too, one ``DeleteSnapshot`` each (EC2 has no batch
delete). So ours reports its calls per deleted AMI twice: all its calls, and its calls for the AMIs alone
(all but the volume sets' ``DeleteSnapshot``, from the module's own per-operation count), the figure
comparable with the other two and the one issue 17's target (1.1 plus a constant) is about.

API calls are counted by the sandbox (``requests`` control); wall time is this machine's. The sandbox
answers at most 5 items per page to exercise paging code; AWS fills a page up to ``MaxResults``, so for
these runs the cap is lifted (``snapshots.PAGE_CAP``) and a listing costs what it costs on AWS (the peer
and the AWS CLI send no ``MaxResults`` and get one page either way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta


from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance
from sandbox import __main__ as sandbox_cli
from sandbox import world as sandbox_world
from sandbox.clock import CONTEXT
from sandbox import scenario
from sandbox.control import Sandbox
from sandbox.rules import snapshots as sandbox_snapshots

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KEEP_DAYS = 7
AWS_PAGE_CAP = 1000  # DescribeImages and DescribeSnapshots: MaxResults up to 1000


def daily_backups(endpoint, seeded, lineage, amis, seed_names=False):
    """``amis`` daily backups of a fresh instance of ``lineage``, the newest today. Returns the instance id."""
    ec2 = scenario.client("ec2", endpoint)
    instance = sandbox_world.launch(ec2, seeded, "us-east-1a", {t.LINEAGE: lineage})
    volume = sandbox_world.lineage_volume(ec2, lineage, "us-east-1a", 8)
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    Sandbox(endpoint).settle()
    today = CONTEXT.now()
    for age in range(amis):
        day = (today - timedelta(days=age)).strftime("%Y%m%d")
        name = f"k8s-master-{day}" if seed_names else f"{lineage}-{day}"
        result = backup_instance(
            ec2, instance, name, create_image=True, extra_tags={"AutoBackup": "true"} if seed_names else None
        )
        _backdate(result, today - timedelta(days=age, hours=1))
    Sandbox(endpoint).settle()
    return instance


def _backdate(result, when):
    """Make one backup ``when`` old: its AMI's creation date and its volume snapshots' start time."""
    backend = CONTEXT.backend("ec2")
    naive = when.replace(tzinfo=None)
    backend.amis[result.image_id].creation_date = naive
    for snapshot in result.to_dict()["snapshots"]:
        backend.snapshots[snapshot["snapshot_id"]].start_time = naive


def _recent(endpoint, **filters):
    """AMIs younger than the retention period: a correct tool deletes none of them."""
    cutoff = (CONTEXT.now() - timedelta(days=KEEP_DAYS)).strftime("%Y-%m-%dT%H:%M:%S")
    return sum(1 for image in _images(endpoint, **filters) if image["CreationDate"] > cutoff)


def _snapshots_of(endpoint, instance):
    """The snapshots a backup of ``instance`` took (its volume sets' and its AMIs'), still there."""
    pages = (
        scenario.client("ec2", endpoint)
        .get_paginator("describe_snapshots")
        .paginate(OwnerIds=["self"], Filters=[{"Name": f"tag:{t.SOURCE_INSTANCE}", "Values": [instance]}])
    )
    return sum(len(page["Snapshots"]) for page in pages)


def _per_ami(calls, deleted):
    return round(calls / deleted, 3) if deleted else None


def _count(endpoint):
    return Sandbox(endpoint).call("requests", reset=True)["total"]


def _images(endpoint, **filters):
    pages = (
        scenario.client("ec2", endpoint)
        .get_paginator("describe_images")
        .paginate(Owners=["self"], Filters=[{"Name": k, "Values": [v]} for k, v in filters.items()])
    )
    return [image for page in pages for image in page["Images"]]


def _playbook(env, tasks, workdir, name):
    path = os.path.join(workdir, f"{name}.yml")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(
            [
                {
                    "name": name,
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "module_defaults": {"group/ec2spot.autorecover.aws": {"region": "us-east-1"}},
                    "tasks": tasks,
                }
            ],
            handle,
        )
    report, returncode, stderr = scenario.ansible_playbook([path], env, REPO)
    if returncode:
        raise RuntimeError(f"{name} failed:\n{json.dumps(report)[-3000:]}\n{stderr[-2000:]}")
    return report["plays"][0]["tasks"][-1]["hosts"]["localhost"]


def aws_cli(workdir):
    """The AWS CLI: on PATH, else installed into a virtualenv of its own (it pins its own botocore)."""
    found = shutil.which("aws")
    if found and subprocess.run([found, "--version"], capture_output=True, check=False).returncode == 0:
        return found
    venv = os.path.join(REPO, ".build", "awscli")
    if not os.path.exists(os.path.join(venv, "bin", "aws")):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "awscli"], check=True)
    return os.path.join(venv, "bin", "aws")


def run(endpoint, state_dir, amis):
    # The RTO runs before this one advance the manual clock by days; spot_backup and seed 001's `date` read the
    # wall clock, so the backups are dated from it too (otherwise ours kept two days more than it should).
    with CONTEXT.lock:
        CONTEXT.clock.anchor_to_wall()
    page_cap, sandbox_snapshots.PAGE_CAP = sandbox_snapshots.PAGE_CAP, AWS_PAGE_CAP
    try:
        return _run(endpoint, state_dir, amis)
    finally:
        sandbox_snapshots.PAGE_CAP = page_cap


def _run(endpoint, state_dir, amis):
    env = sandbox_cli.apply_env(sandbox_cli.sandbox_env(endpoint, state_dir))
    seeded = json.load(open(env["EC2SPOT_SANDBOX_WORLD"], encoding="utf-8"))
    results = {"amis": amis, "keep_days": KEEP_DAYS}
    workdir = os.path.join(state_dir, "retention")
    os.makedirs(workdir, exist_ok=True)

    instance = daily_backups(endpoint, seeded, "bench-ours", amis)
    recent = _recent(endpoint, **{f"tag:{t.LINEAGE}": "bench-ours"})
    _count(endpoint)
    began = time.monotonic()
    ours = _playbook(
        env,
        [
            {
                "name": "retention alone",
                "ec2spot.autorecover.spot_backup": {
                    "backup": False,
                    "lineage": "bench-ours",
                    "retention": {"max_age_days": KEEP_DAYS},
                },
            }
        ],
        workdir,
        "ours",
    )
    results["ours_seconds"] = round(time.monotonic() - began, 2)
    results["ours_api_calls"] = _count(endpoint)
    results["ours_images_left"] = len(_images(endpoint, **{f"tag:{t.LINEAGE}": "bench-ours"}))
    results["ours_images_deleted"] = len(ours["deleted"]["images"])
    results["ours_snapshots_deleted"] = len(ours["deleted"]["snapshots"])
    results["ours_snapshots_left"] = _snapshots_of(endpoint, instance)
    results["ours_recent_deleted"] = recent - _recent(endpoint, **{f"tag:{t.LINEAGE}": "bench-ours"})
    results["ours_kept"] = ours["kept"]
    results["ours_calls_by_operation"] = ours["retention"]["api_calls"]
    volume_deletes = ours["retention"]["api_calls"].get("DeleteSnapshot", 0)
    results["ours_calls_per_deleted_ami"] = _per_ami(results["ours_api_calls"], results["ours_images_deleted"])
    results["ours_ami_calls_per_deleted_ami"] = _per_ami(
        results["ours_api_calls"] - volume_deletes, results["ours_images_deleted"]
    )

    instance = daily_backups(endpoint, seeded, "bench-peer", amis)
    recent = _recent(endpoint, **{f"tag:{t.LINEAGE}": "bench-peer"})
    _count(endpoint)
    cutoff = (CONTEXT.now() - timedelta(days=KEEP_DAYS)).strftime("%Y-%m-%dT%H:%M:%S")
    began = time.monotonic()
    _playbook(
        env,
        [
            {
                "name": "find the lineage's AMIs",
                "amazon.aws.ec2_ami_info": {"owners": ["self"], "filters": {f"tag:{t.LINEAGE}": "bench-peer"}},
                "register": "peer_amis",
            },
            {
                "name": "delete the AMIs older than a week with their snapshots",
                "amazon.aws.ec2_ami": {"image_id": "{{ item.image_id }}", "state": "absent", "delete_snapshot": True},
                "loop": "{{ peer_amis.images | selectattr('creation_date', 'lt', '" + cutoff + "') | list }}",
                "loop_control": {"label": "{{ item.image_id }}"},
            },
        ],
        workdir,
        "peer",
    )
    results["peer_seconds"] = round(time.monotonic() - began, 2)
    results["peer_api_calls"] = _count(endpoint)
    results["peer_images_left"] = len(_images(endpoint, **{f"tag:{t.LINEAGE}": "bench-peer"}))
    results["peer_images_deleted"] = amis - results["peer_images_left"]
    results["peer_snapshots_left"] = _snapshots_of(endpoint, instance)
    results["peer_recent_deleted"] = recent - _recent(endpoint, **{f"tag:{t.LINEAGE}": "bench-peer"})
    results["peer_calls_per_deleted_ami"] = _per_ami(results["peer_api_calls"], results["peer_images_deleted"])

    instance = daily_backups(endpoint, seeded, "bench-seed", amis, seed_names=True)
    seed_lineage = {f"tag:{t.LINEAGE}": "bench-seed"}  # ours and the peer's AMIs are tagged AutoBackup=true too
    recent = _recent(endpoint, **seed_lineage)
    cli = aws_cli(workdir)
    _count(endpoint)
    began = time.monotonic()
    done = subprocess.run(
        ["bash", os.path.join(HERE, "seed001_retention.sh")],
        capture_output=True,
        text=True,
        check=False,
        env=dict(env, PATH=os.path.dirname(cli) + os.pathsep + env["PATH"], LOG_FILE=os.path.join(workdir, "seed.log")),
    )
    results["seed_script_seconds"] = round(time.monotonic() - began, 2)
    results["seed_script_api_calls"] = _count(endpoint)
    results["seed_script_exit_code"] = done.returncode
    results["seed_images_left"] = len(_images(endpoint, **seed_lineage))
    results["seed_images_deleted"] = amis - results["seed_images_left"]
    results["seed_snapshots_left"] = _snapshots_of(endpoint, instance)
    results["seed_recent_deleted"] = recent - _recent(endpoint, **seed_lineage)
    results["seed_script_calls_per_deleted_ami"] = _per_ami(
        results["seed_script_api_calls"], results["seed_images_deleted"]
    )
    return results
