"""A small double of the AWX / Automation Controller REST API (/api/v2/) on a loopback port.

It answers what playbooks/awx.yml asks, as the controller does: paged lists filtered by name and
organization, POST (201 with the object, defaults filled in), PATCH, the project's update status,
a job template's survey_spec (refused with 400 by the controller's own survey rules, ``survey_errors``)
and credentials sub-list (associate with ``{"id": N}``, 204), and 401 without valid credentials.
It keeps every request it received, so tests can check what the playbook sent.
"""

import base64
import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# The controller's survey question types and the Python type of their defaults (awx/api/views JobTemplateSurveySpec).
SURVEY_TYPES = {
    "text": str,
    "textarea": str,
    "password": str,
    "multiplechoice": str,
    "multiselect": str,
    "integer": int,
    "float": float,
}

# Fields the controller gives an object that the request did not set (the ones awx.yml compares or reads).
DEFAULTS = {
    "execution_environments": {"description": "", "organization": None, "credential": None, "pull": ""},
    "projects": {
        "description": "",
        "scm_type": "",
        "scm_url": "",
        "scm_branch": "",
        "credential": None,
        "scm_update_on_launch": False,
        "status": "successful",
    },
    "inventories": {"description": "", "variables": "", "kind": ""},
    "job_templates": {
        "description": "",
        "job_type": "run",
        "inventory": None,
        "execution_environment": None,
        "ask_job_type_on_launch": False,
        "ask_diff_mode_on_launch": False,
        "ask_variables_on_launch": False,
        "survey_enabled": False,
        "forks": 0,
        "limit": "",
        "verbosity": 0,
        "extra_vars": "",
    },
}
REQUIRED = {
    "execution_environments": ("name", "image"),
    "projects": ("name", "organization"),
    "inventories": ("name", "organization"),
    "job_templates": ("name", "playbook", "project", "inventory"),
}


def survey_errors(survey):
    """The controller's checks of a survey spec when it is saved, and of its defaults at launch; [] when valid."""
    errors = []
    if not isinstance(survey, dict):
        return ["survey spec is not a JSON object"]
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if field not in survey:
            errors.append(f"Field '{field}' is missing from survey spec.")
        elif not isinstance(survey[field], kind):
            errors.append(f"Expected {kind.__name__} for field '{field}'.")
    if errors:
        return errors
    if not survey["spec"]:
        return ["'spec' doesn't contain any items."]
    seen = set()
    for idx, question in enumerate(survey["spec"]):
        if not isinstance(question, dict):
            errors.append(f"Survey question {idx} is not a json object.")
            continue
        missing = [f for f in ("type", "question_name", "variable", "required") if f not in question]
        if missing:
            errors.append(f"{missing} missing from survey question {idx}")
            continue
        if not all(isinstance(question[f], str) for f in ("type", "question_name", "variable")):
            errors.append(f"type, question_name and variable of survey question {idx} must be strings")
        if not isinstance(question["required"], bool):
            errors.append(f"'required' in survey question {idx} expected to be boolean.")
        if question["variable"] in seen:
            errors.append(f"'variable' '{question['variable']}' duplicated in survey question {idx}.")
        seen.add(question["variable"])
        qtype = question["type"]
        if qtype not in SURVEY_TYPES:
            errors.append(f"'{qtype}' in survey question {idx} is not one of the allowed question types.")
            continue
        default = question.get("default", "")
        if default != "" and (not isinstance(default, SURVEY_TYPES[qtype]) or isinstance(default, bool)):
            errors.append(
                f"Default value {default!r} in survey question {idx} expected to be {SURVEY_TYPES[qtype].__name__}."
            )
        for key in ("min", "max"):
            if question.get(key) is not None and not isinstance(question[key], int):
                errors.append(f"The {key} limit in survey question {idx} expected to be integer.")
        if isinstance(default, str) and default.startswith("$encrypted$") and qtype != "password":
            errors.append(f"$encrypted$ is a reserved keyword for password question defaults (question {idx}).")
        if qtype in ("multiplechoice", "multiselect"):
            choices = question.get("choices")
            if not choices:
                errors.append(f"Survey question {idx} of type {qtype} must specify choices.")
                continue
            choices = choices.splitlines() if isinstance(choices, str) else choices
            defaults = default.splitlines() if isinstance(default, str) else list(default)
            if qtype == "multiplechoice" and len(defaults) > 1:
                errors.append("Multiple Choice (Single Select) can only have one default value.")
            if any(item not in choices for item in defaults):
                errors.append(f"Default choice must be answered from the choices listed (question {idx}).")
        # At launch the controller holds a default (an answer left as it is) to the question's limits.
        low, high = question.get("min"), question.get("max")
        if default != "" and qtype in ("text", "textarea", "password"):
            if (low is not None and len(default) < low) or (high is not None and len(default) > high):
                errors.append(f"Default of survey question {idx} is not between {low} and {high} characters.")
        if default != "" and qtype in ("integer", "float"):
            if (low is not None and default < low) or (high is not None and default > high):
                errors.append(f"Default of survey question {idx} is not between {low} and {high}.")
    return errors


class Controller:
    """The double's state: objects by type, and the requests received."""

    def __init__(
        self, username="admin", password="secret", token=None, playbooks=(), organizations=("Default",), credentials=()
    ):
        self.auth = {"Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}
        if token:
            self.auth.add("Bearer " + token)
        self.playbooks = set(playbooks)
        self.requests = []
        self.next_id = 1
        self.objects = {kind: {} for kind in ("organizations", "credentials", *DEFAULTS)}
        self.surveys = {}
        self.job_template_credentials = {}
        self.lock = threading.Lock()
        for name in organizations:
            self._add("organizations", {"name": name})
        for name in credentials:
            self._add("credentials", {"name": name, "kind": "aws"})
        self.server = None

    def _add(self, kind, fields):
        obj = dict(DEFAULTS.get(kind, {}), **fields, id=self.next_id, type=kind[:-1])
        if kind == "job_templates":
            obj["summary_fields"] = {"credentials": []}
        self.objects[kind][self.next_id] = obj
        self.next_id += 1
        return obj

    def by_name(self, kind, name):
        return next(obj for obj in self.objects[kind].values() if obj["name"] == name)

    def snapshot(self):
        """A copy of the state (objects, surveys, credentials), with by_name, for checks after later requests."""
        copied = Controller.__new__(Controller)
        copied.objects, copied.surveys, copied.job_template_credentials = copy.deepcopy(
            (self.objects, self.surveys, self.job_template_credentials)
        )
        return copied

    def writes(self):
        return [r for r in self.requests if r["method"] != "GET"]

    # -- HTTP ---------------------------------------------------------------------------------------------
    def handle(self, method, path, query, headers, body):
        if headers.get("Authorization") not in self.auth:
            return 401, {"detail": "Authentication credentials were not provided."}
        match = re.fullmatch(r"/api/v2/(\w+)/(?:(\d+)/)?(?:(survey_spec|credentials)/)?", path)
        if not match or match.group(1) not in self.objects:
            return 404, {"detail": "Not found."}
        kind, ident, sub = match.group(1), match.group(2), match.group(3)
        with self.lock:
            if ident is None:
                if method == "GET":
                    return 200, self._list(kind, query)
                if method == "POST" and kind in DEFAULTS:
                    return self._create(kind, body)
                return 405, {"detail": f'Method "{method}" not allowed.'}
            obj = self.objects[kind].get(int(ident))
            if obj is None:
                return 404, {"detail": "Not found."}
            if sub == "survey_spec":
                return self._survey(obj, method, body)
            if sub == "credentials":
                return self._credentials(obj, method, body)
            if method == "GET":
                return 200, obj
            if method == "PATCH":
                errors = self._errors(kind, dict(obj, **body))
                if errors:
                    return 400, errors
                obj.update(body)
                return 200, obj
            return 405, {"detail": f'Method "{method}" not allowed.'}

    def _list(self, kind, query):
        results = [
            obj
            for obj in self.objects[kind].values()
            if all(str(obj.get(key)) == values[0] for key, values in query.items() if key in ("name", "organization"))
            and ("name__in" not in query or obj["name"] in query["name__in"][0].split(","))
        ]
        return {"count": len(results), "next": None, "previous": None, "results": results}

    def _errors(self, kind, fields):
        errors = {key: ["This field is required."] for key in REQUIRED[kind] if fields.get(key) in (None, "")}
        for key, target in (
            ("organization", "organizations"),
            ("project", "projects"),
            ("inventory", "inventories"),
            ("execution_environment", "execution_environments"),
            ("credential", "credentials"),
        ):
            if fields.get(key) is not None and fields[key] not in self.objects[target]:
                errors[key] = [f'Invalid pk "{fields[key]}" - object does not exist.']
        if kind == "job_templates":
            if fields.get("job_type") not in ("run", "check"):
                errors["job_type"] = [f'"{fields.get("job_type")}" is not a valid choice.']
            if fields.get("playbook") and fields["playbook"] not in self.playbooks:
                errors["playbook"] = ["Playbook not found for project."]
        if kind == "inventories" and fields.get("variables"):
            try:
                json.loads(fields["variables"])
            except ValueError:
                errors["variables"] = ["Must be valid JSON or YAML."]
        return errors

    def _create(self, kind, body):
        errors = self._errors(kind, body)
        if any(
            obj["name"] == body.get("name") and obj.get("organization") == body.get("organization")
            for obj in self.objects[kind].values()
        ):
            errors["__all__"] = [f"{kind} with this Name and Organization already exists."]
        if errors:
            return 400, errors
        if kind == "job_templates":  # the controller infers a job template's organization from its project
            body = dict(body, organization=self.objects["projects"][body["project"]]["organization"])
        return 201, self._add(kind, body)

    def _survey(self, job_template, method, body):
        if method == "GET":
            return 200, self.surveys.get(job_template["id"], {})
        if method == "POST":
            errors = survey_errors(body)
            if errors:
                return 400, {"error": errors[0]}
            self.surveys[job_template["id"]] = body
            return 200, None
        if method == "DELETE":
            self.surveys.pop(job_template["id"], None)
            return 200, None
        return 405, {"detail": f'Method "{method}" not allowed.'}

    def _credentials(self, job_template, method, body):
        attached = self.job_template_credentials.setdefault(job_template["id"], [])
        if method == "GET":
            results = [self.objects["credentials"][ident] for ident in attached]
            return 200, {"count": len(results), "next": None, "previous": None, "results": results}
        if method == "POST":
            if body.get("id") not in self.objects["credentials"]:
                return 400, {"msg": "Related object not found."}
            if body["id"] in attached:
                return 400, {"error": "Cannot assign multiple Amazon Web Services credentials."}
            attached.append(body["id"])
            credential = self.objects["credentials"][body["id"]]
            job_template["summary_fields"]["credentials"].append(
                {"id": credential["id"], "name": credential["name"], "kind": "aws"}
            )
            return 204, None
        return 405, {"detail": f'Method "{method}" not allowed.'}

    def start(self):
        controller = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                controller.requests.append({"method": self.command, "path": url.path, "query": url.query, "body": body})
                status, payload = controller.handle(self.command, url.path, parse_qs(url.query), self.headers, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):  # keep pytest's output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
