"""The sam-invoke tier: every function of template.yaml run by stock ``sam local invoke`` in the Lambda
container, with every fixture in events/, against moto and the channel sandboxes running as containers.

Layout (nothing on the host listens anywhere but 127.0.0.1):

- docker network ``fapiao-hub-sam``, the tier's own: ``moto`` (moto's server, port 5000) and
  ``sandbox`` (the Xunlian, partner, Kingdee and Ekuaibao simulators and the webhook receiver), both
  from the hub-tools image (local/lambda-image/build.sh); their ports are published on the host's
  127.0.0.1 for this process only (provisioning, reading state, the sandboxes' counters);
- the function containers join that network (``--docker-network``) and reach ``http://moto:5000``
  (``AWS_ENDPOINT_URL``) and ``http://sandbox:<port>`` (the channels' base URLs);
- the hub configuration is an SSM SecureString in moto (``HUB_CONFIG_PARAMETER``, as in AWS): the
  sample configuration (local/hub-config.json) with the fixtures' token and the sandboxes' URLs;
- ``.aws-sam/sam-invoke/``: the build (``sam build --build-dir``), ``env-vars.json`` (SAM's
  ``--env-vars`` format) and one log per invocation.

Speed: ``sam local invoke`` rebuilds the function's image for every invocation when the function uses
a layer defined in the template (here 8 to 10 s each: a docker build with the 55 MB layer as context).
The tier therefore bakes the built layer into an image once per layer content
(``fapiao-hub/sam-invoke-<hash>``, kept for the next run) and invokes with ``--invoke-image`` and a
copy of the built template without the layer reference: the same code at /var/task, the same layer
at /opt, only the image is built once instead of per invocation. ``plain=True`` (and
``SAM_INVOKE_PLAIN=1``) invokes the built template as it is; the tier does that once as well.

Which fixture runs which function: its file name's first word, e.g. ``intake-post-blue.json`` ->
``IntakeFunction`` (``<word>`` + ``Function``, case-insensitive). :func:`fixture_plan` fails for a
function without a fixture and for a fixture that names no function.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
WORK = ROOT / ".aws-sam" / "sam-invoke"
VENV_BIN = ROOT / ".venv" / "bin"
SAMPLE_HUB_CONFIG = ROOT / "local" / "hub-config.json"
BUILD_SCRIPT = ROOT / "local" / "lambda-image" / "build.sh"

LAMBDA_IMAGE = "public.ecr.aws/lambda/python:3.13-x86_64"
TOOLS_IMAGE = "fapiao-hub/hub-tools:local"
LAYER_IMAGE_PREFIX = "fapiao-hub/sam-invoke-"  # + the layers' digest
NETWORK = "fapiao-hub-sam"
MOTO_CONTAINER = "fapiao-hub-sam-moto"
SANDBOX_CONTAINER = "fapiao-hub-sam-sandbox"
TIER_LABEL = "org.fapiao-hub.tier=sam-invoke"
MOTO_PORT = 5000
MOTO_IN_NETWORK = f"http://moto:{MOTO_PORT}"
SANDBOX_PORTS = {"xunlian": 8001, "partner": 8002, "kingdee": 8003, "ekuaibao": 8004, "receiver": 8005}
REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# The bearer token the fixtures in events/ carry (Authorization: Bearer ...).
FIXTURE_TOKEN = "fixture-token-sample-erp"
FIXTURE_SYSTEM = "sample-erp"
# The operator token the ops fixtures carry (events/ops-*.json), an "operator" of every business system.
FIXTURE_OPERATOR_TOKEN = "fixture-operator-token"
FIXTURE_OPERATOR = "fixture-operator"
INVOKE_TIMEOUT = 180


class TierFailure(AssertionError):
    """The tier found something wrong (a function failed, a result or a state was not the expected one)."""


# ------------------------------------------------------------------ fixtures -> functions


def serverless_functions(template_path: Path = TEMPLATE) -> list[str]:
    from local.template import load_template

    resources = load_template(template_path).get("Resources") or {}
    return sorted(lid for lid, res in resources.items() if res.get("Type") == "AWS::Serverless::Function")


def fixture_function(fixture: str, functions: Iterable[str]) -> str | None:
    """``intake-post-blue.json`` -> ``IntakeFunction`` (the first word names the function)."""
    word = fixture.split("-", 1)[0].removesuffix(".json").lower()
    matches = [f for f in functions if f.lower() == f"{word}function"]
    return matches[0] if matches else None


def fixture_plan(template_path: Path = TEMPLATE, events_dir: Path = EVENTS) -> dict[str, str]:
    """Every fixture in ``events_dir`` with its function; fails unless every function has one."""
    functions = serverless_functions(template_path)
    plan: dict[str, str] = {}
    orphans = []
    for path in sorted(events_dir.glob("*.json")):
        function = fixture_function(path.name, functions)
        if function is None:
            orphans.append(path.name)
        else:
            plan[path.name] = function
    problems = []
    uncovered = sorted(set(functions) - set(plan.values()))
    if uncovered:
        names = ", ".join(f"{f} (e.g. {f.removesuffix('Function').lower()}-<case>.json)" for f in uncovered)
        problems.append(f"no fixture in {events_dir.name}/ for {names}")
    if orphans:
        problems.append(f"fixtures naming no function of {template_path.name}: {', '.join(orphans)}")
    if problems:
        raise TierFailure("; ".join(problems))
    return plan


# ------------------------------------------------------------------ docker and sam


def run(command: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 300, check: bool = True,
        log: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    done = subprocess.run(  # noqa: S603 (fixed programs: docker, sam)
        command, capture_output=True, text=True, env=dict(env) if env is not None else None, timeout=timeout,
        check=False, cwd=ROOT, input=stdin,
    )  # fmt: skip
    if log is not None:
        log.write_text(f"$ {' '.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}", encoding="utf-8")
    if check and done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
        raise TierFailure(f"{' '.join(command[:4])} ... failed ({done.returncode}):\n{tail}")
    return done


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    return run(["docker", *args], check=check, timeout=timeout).stdout.strip()


def require_images() -> None:
    for image in (LAMBDA_IMAGE, TOOLS_IMAGE):
        if run(["docker", "image", "inspect", image], check=False).returncode != 0:
            raise TierFailure(f"image {image} is missing: run {BUILD_SCRIPT.relative_to(ROOT)} (make sam-invoke does)")


def sam_environment(work: Path, moto_url: str | None = None) -> dict[str, str]:
    """For sam: the venv's python3.13 on PATH; fake credentials (SAM hands them to the functions),
    and nothing of the developer's AWS setup. ``sam local invoke`` asks STS for the account id
    first (14 s of retries where AWS is unreachable): moto answers instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS)
    if moto_url:
        env["AWS_ENDPOINT_URL_STS"] = moto_url
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        SAM_CLI_TELEMETRY="0",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=str(work / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(work / "no-aws-credentials"),
    )
    return env


def declares_endpoint_variable(template_path: Path) -> bool:
    """Whether every function's environment declares AWS_ENDPOINT_URL (in Globals).

    ``sam local invoke --env-vars`` only overrides variables the template declares; without the
    declaration there is no way to point the functions at moto.
    """
    from local.template import load_template

    template = load_template(template_path)
    variables = (((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get("Variables")
    return "AWS_ENDPOINT_URL" in (variables or {})


def template_for_sam(work: Path, template_path: Path = TEMPLATE) -> Path:
    """template.yaml itself when it declares AWS_ENDPOINT_URL, else a copy that does (see README)."""
    if declares_endpoint_variable(template_path):
        return template_path
    text = template_path.read_text(encoding="utf-8")
    match = re.search(r"^Globals:\n(?:(?:[ \t].*)?\n)*?(?P<indent>[ \t]+)Variables:[ \t]*\n", text, re.MULTILINE)
    if match is None:
        raise TierFailure(f"{template_path.name}: no Globals.Function.Environment.Variables to extend")
    line = f'{match.group("indent")}  AWS_ENDPOINT_URL: ""  # added by the sam-invoke tier\n'
    derived = work / "template.yaml"
    derived.write_text(text[: match.end()] + line + text[match.end() :], encoding="utf-8")
    return derived


# ------------------------------------------------------------------ the tier


@dataclass
class Invocation:
    function: str
    fixture: str
    result: Any
    seconds: float
    log: Path

    def failure(self) -> str | None:
        """Why the invocation failed as a Lambda invocation (not: what it answered), else None."""
        if isinstance(self.result, dict) and "errorType" in self.result:
            return f"{self.result['errorType']}: {self.result.get('errorMessage', '')}"
        if self.result is None:
            return "no result on stdout"
        return None

    def answer(self) -> Any:
        """The function's result; raises TierFailure when the function failed."""
        why = self.failure()
        if why is not None:
            raise TierFailure(f"{self.function} with {self.fixture} failed: {why} (log: {self.log})")
        return self.result

    def http(self) -> tuple[int, dict[str, Any]]:
        """(status code, parsed body) of an HTTP API answer."""
        answer = self.answer()
        if not isinstance(answer, dict) or "statusCode" not in answer:
            raise TierFailure(f"{self.function} with {self.fixture}: not an HTTP answer: {answer!r}"[:500])
        body = answer.get("body") or "null"
        return int(answer["statusCode"]), json.loads(body)


@dataclass
class Tier:
    work: Path = WORK
    moto_url: str = ""  # moto as the host sees it (published on 127.0.0.1)
    sandbox_urls: dict[str, str] = field(default_factory=dict)
    resources: Any = None
    hub_config: dict[str, Any] = field(default_factory=dict)
    built_template: Path | None = None  # sam build's output, as sam local invoke takes it
    invoke_template: Path | None = None  # the same without template-defined layers (see above)
    invoke_image: str | None = None  # the runtime image with those layers at /opt
    env_vars: Path | None = None
    invocations: list[Invocation] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # what one step leaves for a later one

    # -------------------------------------------------------------- set-up

    def start(self) -> Tier:
        started = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work / "logs", ignore_errors=True)
        (self.work / "logs").mkdir()
        require_images()
        self.remove_containers()  # what an interrupted run may have left
        docker("network", "create", "--label", TIER_LABEL, NETWORK)
        self._run_container(MOTO_CONTAINER, "moto", [MOTO_PORT], ["moto", "--port", str(MOTO_PORT)])
        self.moto_url = f"http://{self._published(MOTO_CONTAINER, MOTO_PORT)}"
        self.hub_config = tier_hub_config()
        spec = sandbox_spec(self.hub_config)
        self._run_container(SANDBOX_CONTAINER, "sandbox", list(SANDBOX_PORTS.values()), ["sandbox", json.dumps(spec)])
        self.sandbox_urls = {
            kind: f"http://{self._published(SANDBOX_CONTAINER, port)}" for kind, port in SANDBOX_PORTS.items()
        }
        self._wait_until_up()
        self.timings["containers"] = time.monotonic() - started

        mark = time.monotonic()
        self.provision()
        self.timings["provision"] = time.monotonic() - mark
        self.build()
        return self

    def _run_container(self, name: str, alias: str, ports: list[int], command: list[str]) -> None:
        published = [arg for port in ports for arg in ("-p", f"127.0.0.1::{port}")]
        docker("run", "-d", "--name", name, "--label", TIER_LABEL, "--network", NETWORK, "--network-alias", alias,
               *published, TOOLS_IMAGE, *command)  # fmt: skip

    @staticmethod
    def _published(container: str, port: int) -> str:
        for line in docker("port", container, f"{port}/tcp").splitlines():
            if line.startswith("127.0.0.1:"):
                return line
        raise TierFailure(f"{container}: port {port} is not published on 127.0.0.1")

    def _wait_until_up(self, timeout: float = 30) -> None:
        probes = [(MOTO_CONTAINER, f"{self.moto_url}/moto-api/")]
        probes += [
            (SANDBOX_CONTAINER, f"{url}/_sandbox/notifications" if kind == "receiver" else f"{url}/_sandbox/issued")
            for kind, url in self.sandbox_urls.items()
            if kind != "ekuaibao"  # it has no status page; it starts with the others
        ]
        deadline = time.monotonic() + timeout
        for container, url in probes:
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (http://127.0.0.1 only)
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    logs = docker("logs", "--tail", "20", container, check=False)
                    raise TierFailure(f"{container} did not answer on {url} within {timeout:g} s:\n{logs}")
                time.sleep(0.2)

    def session(self) -> Any:
        import boto3

        return boto3.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.moto_url)

    def provision(self) -> None:
        """Tables, queues, bucket, bus and rules from template.yaml; the hub configuration in SSM;
        the env-vars file pointing every function at the containers."""
        from local.provision import provision
        from local.template import effective_parameters, load_template

        self.resources = provision(TEMPLATE, session=self.session(), endpoint_url=self.moto_url, region=REGION)
        parameter = effective_parameters(load_template(TEMPLATE))["HubConfigParameterName"]
        self.client("ssm").put_parameter(
            Name=parameter, Type="SecureString", Overwrite=True,
            Value=json.dumps(self.hub_config, ensure_ascii=False),
        )  # fmt: skip
        # Queue URLs name the host that provisioned them (127.0.0.1:<published port>): the functions see "moto".
        host_url = re.escape(self.moto_url)
        common = {"AWS_ENDPOINT_URL": MOTO_IN_NETWORK, "HUB_CONFIG_PARAMETER": parameter}
        env_vars: dict[str, dict[str, str]] = {"Parameters": common}
        for function in serverless_functions():
            environment = self.resources.function_environment(function, common)
            env_vars[function] = {k: re.sub(host_url, MOTO_IN_NETWORK, v) for k, v in environment.items()}
        self.env_vars = self.work / "env-vars.json"
        self.env_vars.write_text(json.dumps(env_vars, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def build(self) -> None:
        template = template_for_sam(self.work)
        if template != TEMPLATE:
            self.notes["template"] = (
                f"{TEMPLATE.name} does not declare AWS_ENDPOINT_URL (Globals): built from a copy that does, "
                f"{template.relative_to(ROOT)}"
            )
        build_dir = self.work / "build"
        # --cached: code and layer sources that did not change are not built again (SAM hashes them).
        command = ["sam", "build", "--template", str(template), "--base-dir", str(ROOT), "--build-dir", str(build_dir)]
        command += ["--cached", "--cache-dir", str(self.work / "cache")]
        mark = time.monotonic()
        run(command, env=sam_environment(self.work), timeout=600, log=self.work / "logs" / "sam-build.log")
        self.built_template = build_dir / "template.yaml"
        self.timings["sam build"] = time.monotonic() - mark
        mark = time.monotonic()
        baked = bake_layers(self.built_template)
        if baked is not None and os.environ.get("SAM_INVOKE_PLAIN") != "1":
            self.invoke_template, self.invoke_image = baked
        self.timings["layer image"] = time.monotonic() - mark

    # -------------------------------------------------------------- invoking

    def invoke(
        self, function: str, fixture: str | Path, *, template: Path | None = None, plain: bool = False
    ) -> Invocation:
        """``sam local invoke`` of ``function`` with ``fixture``; ``template``: a built template
        (default: the tier's); ``plain``: without the baked layer image (see the module docstring)."""
        event = fixture if isinstance(fixture, Path) else EVENTS / fixture
        assert self.built_template is not None and self.env_vars is not None, "start() the tier first"
        template = template or self.built_template
        image_args: list[str] = []
        if self.invoke_image and not plain:
            layerless = self.invoke_template if template == self.built_template else layerless_template(template)[0]
            template, image_args = layerless, ["--invoke-image", self.invoke_image]
        log = self.work / "logs" / f"{len(self.invocations) + 1:02d}-{function}-{event.stem}.log"
        command = [
            "sam", "local", "invoke", function, "--template", str(template), "--event", str(event),
            "--env-vars", str(self.env_vars), "--docker-network", NETWORK, "--skip-pull-image", "--region", REGION,
            *image_args,
        ]  # fmt: skip
        started = time.monotonic()
        done = run(command, env=sam_environment(self.work, self.moto_url), timeout=INVOKE_TIMEOUT, check=False, log=log)
        seconds = time.monotonic() - started
        result = None
        lines = done.stdout.strip().splitlines()
        if lines:
            try:
                result = json.loads(lines[-1])
            except ValueError:
                result = None
        if done.returncode != 0 and result is None:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise TierFailure(f"sam local invoke {function} -e {event.name} exited {done.returncode}:\n{tail}")
        invocation = Invocation(function, event.name, result, seconds, log)
        self.invocations.append(invocation)
        return invocation

    # -------------------------------------------------------------- state

    def sandbox(self, kind: str, path: str) -> Any:
        with urllib.request.urlopen(f"{self.sandbox_urls[kind]}{path}", timeout=5) as answer:  # noqa: S310
            return json.loads(answer.read())

    def table(self, logical_id: str = "ApplicationsTable") -> Any:
        return self.session().resource("dynamodb", endpoint_url=self.moto_url).Table(self.resources.tables[logical_id])

    def application(self, open_apply_code: str, system: str = FIXTURE_SYSTEM) -> dict[str, Any] | None:
        return self.table().get_item(Key={"pk": f"{system}#{open_apply_code}"}, ConsistentRead=True).get("Item")

    def applications(self) -> list[dict[str, Any]]:
        items = self.table().scan(ConsistentRead=True)["Items"]
        return [i for i in items if "open_apply_code" in i and not str(i["pk"]).startswith("replay#")]

    def invoices(self, open_apply_code: str, system: str = FIXTURE_SYSTEM) -> list[dict[str, Any]]:
        items = self.table("InvoicesTable").scan(ConsistentRead=True)["Items"]
        return [i for i in items if i.get("application_key") == f"{system}#{open_apply_code}"]

    def queue_url(self, logical_id: str) -> str:
        return str(self.resources.queues[logical_id].url)

    def drain(self, logical_id: str) -> list[dict[str, Any]]:
        """Every message of a queue (received and deleted): what the hub sent there."""
        sqs, url, bodies = self.client("sqs"), self.queue_url(logical_id), []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return bodies
            for message in batch:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def s3_keys(self, prefix: str = "") -> list[str]:
        listed = self.client("s3").list_objects_v2(Bucket=self.resources.buckets["InvoiceFileBucket"], Prefix=prefix)
        return [o["Key"] for o in listed.get("Contents", [])]

    # -------------------------------------------------------------- tear-down

    @staticmethod
    def remove_containers() -> None:
        """The tier's containers and network (by their names; images are kept)."""
        docker("rm", "-f", MOTO_CONTAINER, SANDBOX_CONTAINER, check=False)
        if docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$", check=False):
            docker("network", "rm", NETWORK, check=False)

    def stop(self) -> None:
        self.remove_containers()
        remove_stale_layer_images(self.invoke_image)


@contextlib.contextmanager
def exclusive(work: Path = WORK, timeout: float = 1200) -> Iterator[None]:
    """One tier at a time on this machine (its containers, network and build directory are named)."""
    work.mkdir(parents=True, exist_ok=True)
    with (work.parent / "sam-invoke.lock").open("w") as lock:
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    print("sam-invoke: another run of the tier is in progress; waiting for it", flush=True)
                    waiting = True
                if time.monotonic() > deadline:
                    raise TierFailure(f"another sam-invoke run held {lock.name} for {timeout:g} s") from None
                time.sleep(2)
        yield


# ------------------------------------------------------------------ the layers, baked once


def layerless_template(built_template: Path) -> tuple[Path, list[Path]]:
    """``template.invoke.yaml`` next to a built template: the same without template-defined layers;
    with those layers' directories, in the order Lambda applies them."""
    import yaml

    from local.template import load_template

    template = load_template(built_template)
    resources = template.get("Resources") or {}

    def local_layers(layers: list[Any]) -> list[str]:
        return [
            layer["Ref"]
            for layer in layers or ()
            if isinstance(layer, dict)
            and resources.get(layer.get("Ref"), {}).get("Type") == "AWS::Serverless::LayerVersion"
        ]

    function_globals = (template.get("Globals") or {}).get("Function") or {}
    shared = local_layers(function_globals.pop("Layers", None) or [])
    for resource in resources.values():
        if resource.get("Type") == "AWS::Serverless::Function":
            own = local_layers((resource.get("Properties") or {}).pop("Layers", None) or [])
            if own:
                raise TierFailure("functions with layers of their own: extend tests/container/tier.py (bake per list)")
    directories = [built_template.parent / str(resources[name]["Properties"]["ContentUri"]) for name in shared]
    derived = built_template.with_name("template.invoke.yaml")
    derived.write_text(yaml.safe_dump(template, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return derived, directories


def _tree_digest(directories: list[Path]) -> str:
    digest = hashlib.sha256()
    for directory in directories:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(docker("image", "inspect", "-f", "{{.Id}}", LAMBDA_IMAGE).encode())
    return digest.hexdigest()[:16]


def bake_layers(built_template: Path) -> tuple[Path, str] | None:
    """The built layers at /opt of the runtime image, as SAM would bake them, once per content.

    Returns (the layer-less template, the image), or None when no function has a layer.
    """
    template, directories = layerless_template(built_template)
    if not directories:
        return None
    image = f"{LAYER_IMAGE_PREFIX}{_tree_digest(directories)}:latest"
    if run(["docker", "image", "inspect", image], check=False).returncode != 0:
        adds = "".join(f"ADD {d.relative_to(built_template.parent)} /opt\n" for d in directories)
        dockerfile = f"FROM {LAMBDA_IMAGE}\nLABEL {TIER_LABEL}\n{adds}"
        # The classic builder (no BuildKit needed); the base image is local: nothing is pulled.
        run(
            ["docker", "build", "-q", "-t", image, "-f", "-", str(built_template.parent)],
            env={**os.environ, "DOCKER_BUILDKIT": "0"}, stdin=dockerfile, timeout=600,
        )  # fmt: skip
    return template, image


def remove_stale_layer_images(keep: str | None) -> None:
    """Layer images (and SAM's rapid images made from them) of earlier layer contents."""
    listed = docker("images", "--filter", f"label={TIER_LABEL}", "--format", "{{.Repository}}:{{.Tag}}", check=False)
    keep_repository = keep.split(":")[0] if keep else None
    stale = [
        name
        for name in listed.splitlines()
        if name.startswith(LAYER_IMAGE_PREFIX) and name.split(":")[0] != keep_repository
    ]
    if stale:
        docker("rmi", *stale, check=False)


# ------------------------------------------------------------------ the tier's hub configuration


def tier_hub_config(sample: Path = SAMPLE_HUB_CONFIG) -> dict[str, Any]:
    """The sample configuration with the fixtures' tokens (a business system's, an operator's) and the
    sandbox container's URLs (and the
    fixture system may reverse invoices issued outside the hub, for the red fixture).

    Ekuaibao's HMAC secret is left out: seed 000's pushes carry the accessToken only, as the
    fixture does (a fixture cannot carry a signature over a fresh timestamp). Signed pushes are
    the unit tests' (tests/unit/test_callbacks.py).
    """
    from fapiao_hub.domain.config import HubConfig, token_sha256

    config = json.loads(sample.read_text(encoding="utf-8"))
    for system_id, system in config["business_systems"].items():
        if system_id == FIXTURE_SYSTEM:
            system["token_sha256"] = [token_sha256(FIXTURE_TOKEN)]
            # events/intake-post-red.json reverses seed 004's invoice, which the hub never issued.
            system["reverses_outside_invoices"] = True
        webhook = system.get("webhook")
        if webhook and webhook.get("url") == "sandbox":
            webhook["url"] = f"http://sandbox:{SANDBOX_PORTS['receiver']}/hook"
    config.setdefault("operators", {})[FIXTURE_OPERATOR] = {
        "token_sha256": [token_sha256(FIXTURE_OPERATOR_TOKEN)],
        "role": "operator",
    }
    for channel in config["channels"].values():
        if channel.get("base_url") == "sandbox":
            channel["base_url"] = f"http://sandbox:{SANDBOX_PORTS[channel['type']]}"
            channel["file_hosts"] = [channel["base_url"]]  # its invoice files over plain http (file_fetch.py)
        if channel["type"] == "ekuaibao":
            channel.get("credentials", {}).pop("hmac_secret", None)
    HubConfig.model_validate(config)
    return config


def sandbox_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the sandbox container starts (hub_tools.py), with the configuration's credentials."""
    channels = {c["type"]: c.get("credentials", {}) for c in config["channels"].values()}
    secret = next((s["webhook"].get("secret") for s in config["business_systems"].values() if s.get("webhook")), None)
    servers: list[dict[str, Any]] = [{"kind": "xunlian", "port": SANDBOX_PORTS["xunlian"]}]
    if "partner" in channels:
        servers.append({"kind": "partner", "port": SANDBOX_PORTS["partner"], **channels["partner"]})
    if "kingdee" in channels:
        servers.append({"kind": "kingdee", "port": SANDBOX_PORTS["kingdee"], **channels["kingdee"]})
    if "ekuaibao" in channels:
        servers.append({"kind": "ekuaibao", "port": SANDBOX_PORTS["ekuaibao"], **channels["ekuaibao"]})
    servers.append({"kind": "receiver", "port": SANDBOX_PORTS["receiver"], "secret": secret})
    return {"advertise_host": "sandbox", "servers": servers}


def copy_build(tier: Tier, target: Path) -> Path:
    """A copy of the tier's built artifact (to break it); returns its template."""
    assert tier.built_template is not None
    source = tier.built_template.parent
    shutil.copytree(source, target, symlinks=True)
    return target / tier.built_template.name
