"""The instance_agent role, through real ansible-playbook runs on localhost into throw-away roots.

One run installs the shipped agent into a temporary root and renders the user data; the tests then
read what was written: the units (checked by systemd-analyze), their order, the files and modes, and the
cloud-config document, which must carry exactly the files the main entry point installs. A second
run renders user data for a placeholder agent full of text that trips templating and YAML.
Nothing here touches the real / (the role writes under the temporary root only).
"""

import base64
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.ec2spot.autorecover.plugins.filter.gzip_b64 import gzip_b64, gzip_bytes

REPO = pathlib.Path(__file__).resolve().parents[2]
AGENT = REPO / "roles" / "instance_agent" / "files" / "ec2spot_agent.py"
BOOTSTRAP = REPO / "roles" / "instance_agent" / "files" / "ec2spot_bootstrap.py"
COLLECTIONS = REPO / ".build" / "collections"
UNITS = ("ec2spot-mount.service", "ec2spot-app.service", "ec2spot-watcher.service")
USER_DATA_LIMIT = 16384

# Text that a careless renderer would change: Jinja markers, non-ASCII, a tab, trailing spaces,
# and two final newlines (the file lookup strips them unless told not to).
PLACEHOLDER = (
    "#!/usr/bin/env python3\n"
    '"""Placeholder agent: {{ not_a_variable }} {% raw %} {#\tnot a comment #} \u00e9t\u00e9 \u2713"""\n'
    "print('ok')   \n"
    "\n\n"
)

PLAYBOOK = """\
- name: Install the instance agent into a throw-away root, then render its user data
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Install
      ansible.builtin.include_role:
        name: ec2spot.autorecover.instance_agent

    - name: Render the user data
      ansible.builtin.include_role:
        name: ec2spot.autorecover.instance_agent
        tasks_from: user_data

    - name: Keep it
      ansible.builtin.set_fact:
        kept: {text: "{{ instance_agent_user_data }}", base64: "{{ instance_agent_user_data_base64 }}"}

    - name: Render the user data for an image that has the agent already
      ansible.builtin.include_role:
        name: ec2spot.autorecover.instance_agent
        tasks_from: user_data
      vars:
        instance_agent_user_data_program: false

    - name: Write both out
      ansible.builtin.copy:
        content: "{{ {'with_program': kept, 'without_program': {'text': instance_agent_user_data}} | to_json }}"
        dest: "{{ out }}"
        mode: "0644"
"""


USER_DATA_ONLY = """\
- name: Render the user data only
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Render the user data
      ansible.builtin.include_role:
        name: ec2spot.autorecover.instance_agent
        tasks_from: user_data

    - name: Write it out
      ansible.builtin.copy:
        content: "{{ {'text': instance_agent_user_data} | to_json }}"
        dest: "{{ out }}"
        mode: "0644"
"""


def ansible_env():
    if not (COLLECTIONS / "ansible_collections" / "ec2spot" / "autorecover").exists():
        pytest.fail("run `make collection` first: ec2spot.autorecover is not linked under .build/collections")
    return dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
    )


def playbook(tmp, extra_vars, play=PLAYBOOK):
    (tmp / "play.yml").write_text(play)
    (tmp / "vars.json").write_text(json.dumps(extra_vars))
    return subprocess.run(
        ["ansible-playbook", str(tmp / "play.yml"), "-e", "@" + str(tmp / "vars.json")],
        env=ansible_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def variables(tmp, program):
    return {
        "root": str(tmp / "root"),
        "out": str(tmp / "user-data.json"),
        "instance_agent_root": str(tmp / "root"),
        "instance_agent_program_path": str(program),
        "instance_agent_service": "pg",
        "instance_agent_lineage": "pgdata",
        "instance_agent_app_start_commands": ["docker-compose up -d"],
        "instance_agent_app_stop_commands": ["docker-compose down"],
        "instance_agent_app_directory": "/opt/pg",
        "instance_agent_app_units": ["docker.service"],
        "instance_agent_target_group_arns": [
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/pg/0123456789abcdef"
        ],
        "instance_agent_address_tags": {"Service": "pg"},
    }


def agent_source(program):
    digest = hashlib.sha256(program.read_bytes()).hexdigest()
    return {
        "bucket": "ec2spot-agent-123456789012-us-east-1",
        "key": f"ec2spot-agent/{digest}.py",
        "sha256": digest,
        "region": "us-east-1",
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The shipped agent, installed into a throw-away root and rendered as user data."""
    if not AGENT.is_file():
        pytest.fail(f"{AGENT} is missing: the role ships it")
    tmp = tmp_path_factory.mktemp("instance-agent")
    done = playbook(tmp, dict(variables(tmp, AGENT), instance_agent_agent_source=agent_source(AGENT)))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    rendered = json.loads((tmp / "user-data.json").read_text())
    return {"root": tmp / "root", "program": AGENT, "rendered": rendered}


def unit_entries(path):
    """[(section, key, value)] of a unit file, in order; keys may repeat (After=, Wants=)."""
    entries, section = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(path, section, key):
    return [word for s, k, v in unit_entries(path) if (s, k) == (section, key) for word in v.split()]


# ---- the main entry point ----------------------------------------------------------------------


def test_files_modes_and_configuration(installed):
    root = installed["root"]
    agent = root / "usr/local/sbin/ec2spot-agent"
    assert agent.read_bytes() == installed["program"].read_bytes()
    assert agent.stat().st_mode & 0o7777 == 0o755
    config_path = root / "etc/ec2spot-agent/config.json"
    assert config_path.stat().st_mode & 0o7777 == 0o644
    config = json.loads(config_path.read_text())
    assert config["service"] == "pg" and config["lineage"] == "pgdata"
    assert config["mount_point"] == "/data" and config["filesystem"] == "ext4"
    assert config["app_start_commands"] == ["docker-compose up -d"]
    assert config["address_tags"] == {"Service": "pg"}
    assert config["region"] is None and config["aws_endpoint_url"] is None
    assert config["device_wait_seconds"] == 300 and config["unmount_on_stop"] is True
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).stat().st_mode & 0o7777 == 0o644


def test_units_pass_systemd_analyze_verify(installed, tmp_path):
    """systemd-analyze verify needs no running systemd. Without --root it looks for ExecStart's
    /usr/local/sbin/ec2spot-agent on this machine, which does not have it; with --root it reads the
    units and checks the executable inside the root, but also wants the standard units the ours
    refer to (sysinit.target, network-online.target...) there. So verify a copy of the root with
    this machine's /usr/lib/systemd/system added. Any message, even a warning it ignores (an
    unknown Type=), is a failure: its exit code is 0 for those."""
    analyze, system_units = shutil.which("systemd-analyze"), pathlib.Path("/usr/lib/systemd/system")
    if not analyze or not system_units.is_dir():
        pytest.fail(
            "systemd-analyze and /usr/lib/systemd/system are needed to verify the units (apt-get install systemd)"
        )
    root = tmp_path / "root"
    shutil.copytree(installed["root"], root, symlinks=True)
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    done = subprocess.run(
        [analyze, "verify", "--root=" + str(root)] + ["/etc/systemd/system/" + u for u in UNITS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # and it does catch a broken unit
    broken = root / "etc/systemd/system/ec2spot-app.service"
    broken.write_text(broken.read_text().replace("Type=oneshot", "Type=oneshoot"))
    done = subprocess.run(
        [analyze, "verify", "--root=" + str(root), "/etc/systemd/system/ec2spot-app.service"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "oneshoot" in done.stdout + done.stderr


def test_the_mount_comes_before_the_app_and_the_app_before_the_watcher(installed):
    units = installed["root"] / "etc/systemd/system"
    mount, app, watcher = (units / u for u in UNITS)
    # the app never starts without the data, and only once it is mounted
    assert "ec2spot-mount.service" in values(app, "Unit", "Requires")
    assert "ec2spot-mount.service" in values(app, "Unit", "After")
    assert "ec2spot-app.service" in values(watcher, "Unit", "After")
    assert not {"ec2spot-app.service", "ec2spot-watcher.service"} & set(
        values(mount, "Unit", "After") + values(mount, "Unit", "Requires") + values(mount, "Unit", "Wants")
    )
    # stopped at shutdown while the network and what the app needs are still up (reverse order)
    for unit in (mount, app, watcher):
        assert "network-online.target" in values(unit, "Unit", "After")
    assert "docker.service" in values(app, "Unit", "After") and "docker.service" in values(app, "Unit", "Wants")
    assert values(mount, "Service", "ExecStart") == ["/usr/local/sbin/ec2spot-agent", "mount"]
    assert values(app, "Service", "ExecStart") == ["/usr/local/sbin/ec2spot-agent", "start-app"]
    assert values(app, "Service", "ExecStop") == ["/usr/local/sbin/ec2spot-agent", "stop", "--reason", "shutdown"]
    assert values(watcher, "Service", "ExecStart") == ["/usr/local/sbin/ec2spot-agent", "watch"]
    assert values(mount, "Service", "RemainAfterExit") == values(app, "Service", "RemainAfterExit") == ["yes"]
    assert values(watcher, "Service", "Restart") == ["always"]
    # the mount waits for the device: its timeout covers the wait
    assert int(values(mount, "Service", "TimeoutStartSec")[0]) > 300


def test_the_app_and_the_watcher_are_enabled_offline(installed):
    wants = installed["root"] / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["ec2spot-app.service", "ec2spot-watcher.service"]
    for link in wants.iterdir():
        assert os.readlink(link) == "/etc/systemd/system/" + link.name
    # the mount has no [Install]: ec2spot-app.service pulls it in
    assert not values(installed["root"] / "etc/systemd/system/ec2spot-mount.service", "Install", "WantedBy")


def test_the_shipped_agent_accepts_the_configuration(installed):
    config = installed["root"] / "etc/ec2spot-agent/config.json"
    done = subprocess.run(
        [sys.executable, str(installed["program"]), "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---- the user_data entry point -------------------------------------------------------------------


def test_user_data_carries_exactly_the_installed_files(installed):
    rendered = installed["rendered"]["with_program"]
    text = rendered["text"]
    assert text.startswith("#cloud-config\n")
    # what EC2 gets: the same document, gzipped, within the limit
    packed = base64.b64decode(rendered["base64"], validate=True)
    assert len(packed) <= USER_DATA_LIMIT
    assert gzip.decompress(packed).decode("utf-8") == text
    document = yaml.safe_load(text)
    root = installed["root"]
    files = {entry["path"]: entry for entry in document["write_files"]}
    assert sorted(files) == sorted(
        ["/usr/local/sbin/ec2spot-agent", "/etc/ec2spot-agent/config.json"]
        + ["/etc/systemd/system/" + u for u in UNITS]
    )
    for path, entry in files.items():
        if not path.endswith("ec2spot-agent"):
            assert entry["content"].encode("utf-8") == (root / path.lstrip("/")).read_bytes(), path
        assert entry["permissions"] == ("0755" if path.endswith("ec2spot-agent") else "0644")
        assert set(entry) == {"path", "permissions", "content"}  # plain text: no encoding to undo
    # The agent is more than EC2's 16 KB: the user data carries the bootstrap, which fetches the agent by its digest.
    assert files["/usr/local/sbin/ec2spot-agent"]["content"].encode("utf-8") == BOOTSTRAP.read_bytes()
    config = json.loads(files["/etc/ec2spot-agent/config.json"]["content"])
    assert config["lineage"] == "pgdata" and config["agent_source"] == agent_source(installed["program"])
    assert document["runcmd"] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "ec2spot-watcher.service", "ec2spot-app.service"],
    ]


def test_user_data_without_the_program(installed):
    document = yaml.safe_load(installed["rendered"]["without_program"]["text"])
    assert "/usr/local/sbin/ec2spot-agent" not in [entry["path"] for entry in document["write_files"]]
    assert len(document["write_files"]) == 4


def test_user_data_gives_back_any_text_byte_for_byte(tmp_path):
    """The document is YAML written by a template: text that looks like Jinja, non-ASCII, tabs,
    trailing spaces and several final newlines come back unchanged."""
    program = tmp_path / "placeholder_agent.py"
    program.write_bytes(PLACEHOLDER.encode("utf-8"))
    done = playbook(tmp_path, variables(tmp_path, program), play=USER_DATA_ONLY)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    text = json.loads((tmp_path / "user-data.json").read_text())["text"]
    files = {entry["path"]: entry["content"] for entry in yaml.safe_load(text)["write_files"]}
    assert files["/usr/local/sbin/ec2spot-agent"].encode("utf-8") == PLACEHOLDER.encode("utf-8")
    assert not (tmp_path / "root").exists()  # user_data touches no host


# ---- refusals ------------------------------------------------------------------------------------


def test_the_shipped_agent_is_too_large_to_ride_in_user_data_and_the_refusal_says_what_to_do(tmp_path):
    done = playbook(tmp_path, variables(tmp_path, AGENT), play=USER_DATA_ONLY)
    assert done.returncode != 0
    assert "EC2 takes at most 16384" in done.stdout and "instance_agent_agent_source" in done.stdout


def test_an_agent_source_that_names_another_program_is_refused(tmp_path):
    source = dict(agent_source(AGENT), sha256="0" * 64)
    done = playbook(tmp_path, dict(variables(tmp_path, AGENT), instance_agent_agent_source=source), play=USER_DATA_ONLY)
    assert done.returncode != 0
    assert "must name an S3 bucket, a key and the SHA-256 of" in done.stdout
    assert not (tmp_path / "user-data.json").exists()


@pytest.mark.parametrize(
    "override, words",
    [
        ({"instance_agent_lineage": "pg data"}, "lineage"),
        ({"instance_agent_mount_point": "/"}, "mount point"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_written(tmp_path, override, words):
    program = tmp_path / "agent.py"
    program.write_text(PLACEHOLDER)
    done = playbook(tmp_path, dict(variables(tmp_path, program), **override))
    assert done.returncode != 0
    assert words in done.stdout + done.stderr
    assert not (tmp_path / "root").exists()


# ---- the gzip_b64 filter ---------------------------------------------------------------------------


def test_gzip_b64_round_trips_and_is_reproducible():
    text = PLACEHOLDER * 50
    encoded = gzip_b64(text)
    assert gzip.decompress(base64.b64decode(encoded)) == text.encode("utf-8")
    assert gzip_b64(text) == encoded == gzip_b64(text.encode("utf-8"))
    # fixed header: no name, mtime 0, OS "unknown", whatever the Python version
    assert gzip_bytes(b"x")[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    assert len(gzip_b64(text, level=1)) >= len(encoded)


@pytest.mark.parametrize("value, level", [(None, 9), ("x", 0), ("x", 10), ("x", "high")])
def test_gzip_b64_refuses_what_it_cannot_compress(value, level):
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError):
        gzip_b64(value, level)
