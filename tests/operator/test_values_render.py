"""Spec -> chart values (every field), rendered objects -> objects to apply, prune set."""

import shutil
from pathlib import Path

import pytest
import yaml

from higgs_operator.constants import OWNER_LABEL, RENDER_HASH_ANNOTATION
from higgs_operator.helm import helm_template
from higgs_operator.render import (
    RenderError,
    helm_template_argv,
    object_hash,
    owned_objects,
    parse_manifests,
    prune_set,
)
from higgs_operator.secrets import TokenRef
from higgs_operator.values import PASS_THROUGH, chart_values, desired_replicas

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "higgs-audio"
OWNER = {"metadata": {"name": "tts", "namespace": "team-a", "uid": "1234-uid"}}

SAMPLE = {
    "image": {"repository": "localhost/higgs-audio-simulator", "tag": "0.1.0"},
    "imagePullSecrets": [{"name": "reg"}],
    "serverGeneration": "fork",
    "omni": {"deployConfig": "/etc/omni/higgs_audio_v2.yaml"},
    "model": {"repository": "org/model", "revision": "a" * 40},
    "audioTokenizer": {"repository": "org/tok", "revision": "b" * 40},
    "semanticModel": {"repository": "org/teacher", "revision": "c" * 40},
    "servedModelName": "higgs",
    "limitMmPerPrompt": {"audio": 10},
    "maxModelLen": 4096,
    "gpuMemoryUtilization": 0.5,
    "disableMmPreprocessorCache": False,
    "maxNumSeqs": 4,
    "port": 8100,
    "extraArgs": ["--sim-startup-seconds", "5"],
    "env": [{"name": "A", "value": "b"}],
    "envFrom": [{"secretRef": {"name": "s"}}],
    "extraVolumes": [{"name": "extra", "emptyDir": {}}],
    "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
    "extraInitContainers": [{"name": "warm", "image": "busybox:1.36"}],
    "extraContainers": [{"name": "side", "image": "busybox:1.36"}],
    "disableUsageStats": False,
    "compileCache": {"persistent": False},
    "gpuCount": 2,
    "gpuResourceName": "nvidia.com/gpu",
    "resources": {"requests": {"cpu": "1"}},
    "nodeSelector": {"gpu": "h100"},
    "tolerations": [{"key": "k", "operator": "Exists"}],
    "affinity": {"nodeAffinity": {}},
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
    ],
    "runtimeClassName": "nvidia",
    "priorityClassName": "high",
    "schedulerName": "volcano",
    "podAnnotations": {"a": "b"},
    "podLabels": {"team": "a"},
    "modelCache": {"mode": "none"},
    "voicePresets": {"configMap": "voices"},
    "startupProbe": {"periodSeconds": 1},
    "readinessProbe": {"periodSeconds": 1},
    "livenessProbe": {"periodSeconds": 2},
    "lifecycle": {"preStopSleepSeconds": 0},
    "terminationGracePeriodSeconds": 5,
    "strategy": {"type": "Recreate"},
    "networkPolicy": {"allowedNamespaces": ["clients"]},
    "shm": {"sizeLimit": "1Gi"},
    "scratch": {"sizeLimit": "1Gi"},
    "service": {"port": 9000},
    "podDisruptionBudget": {"enabled": False},
    "podSecurityContext": {"runAsUser": 2000},
    "securityContext": {"readOnlyRootFilesystem": False},
}


def test_sample_covers_every_pass_through_key():
    assert set(SAMPLE) == set(PASS_THROUGH)


def test_server_generation_and_omni_are_passed_to_the_chart():
    """Resources stored under the first CRD carry its default `serverGeneration: fork`, valid again."""
    assert {"serverGeneration", "omni"} <= set(PASS_THROUGH)
    values = chart_values(
        "tts",
        {"serverGeneration": "fork", "maxModelLen": 4096},
        None,
        None,
        1,
        operator_namespace="higgs-system",
    )
    assert values["serverGeneration"] == "fork" and values["maxModelLen"] == 4096
    spec = {"serverGeneration": "omni", "omni": {"deployConfig": "/d.yaml"}}
    values = chart_values("tts", spec, None, None, 1, operator_namespace="higgs-system")
    assert (values["serverGeneration"], values["omni"]) == ("omni", {"deployConfig": "/d.yaml"})


@pytest.mark.parametrize("key", PASS_THROUGH)
def test_each_pass_through_key_copied(key):
    spec = {key: SAMPLE[key]}
    values = chart_values("tts", spec, None, None, 1, operator_namespace="higgs-system")
    # The one key the operator adds to a passed-through block: the NetworkPolicy admits the operator.
    added = {"operatorNamespace": "higgs-system"} if key == "networkPolicy" else {}
    assert values[key] == (SAMPLE[key] | added if added else SAMPLE[key])
    assert spec == {key: SAMPLE[key]}, "the spec must not be changed"


def test_operator_owned_values():
    spec = {"apiKey": {"secretRef": {"name": "k", "key": "kk"}}}
    values = chart_values("tts", spec, TokenRef("hf", "tok"), "c0ffee", 3, operator_namespace="higgs-system")
    assert values["fullnameOverride"] == "tts"
    assert values["replicaCount"] == 3
    assert values["autoscaling"] == {"enabled": False}
    assert values["tests"] == {"enabled": False}
    # The chart's NetworkPolicy (its default: on) admits the operator's own namespace.
    assert values["networkPolicy"] == {"operatorNamespace": "higgs-system"}
    assert values["hfToken"] == {"existingSecret": "hf", "key": "tok"}
    assert values["apiKey"] == {"existingSecret": "k", "key": "kk"}
    assert values["checksums"] == {"hf-token": "c0ffee"}
    assert "value" not in values["hfToken"]  # the token itself never goes into values


def test_values_do_not_alias_spec():
    spec = {"extraArgs": ["--a"]}
    chart_values("tts", spec, None, None, 1, operator_namespace="higgs-system")["extraArgs"].append("--b")
    assert spec["extraArgs"] == ["--a"]


@pytest.mark.parametrize(
    ("spec", "current", "expected"),
    [
        ({"replicas": 3}, 1, 3),
        ({}, None, 1),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}, None, 2),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}, 4, 4),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}, 9, 5),
    ],
)
def test_desired_replicas(spec, current, expected):
    assert desired_replicas(spec, current) == expected


def test_parse_manifests_skips_empty_and_hooks():
    text = (
        "---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: t, annotations: {helm.sh/hook: test}}\n"
    )
    objs = parse_manifests(text)
    assert [o["kind"] for o in objs] == ["Service"]
    with pytest.raises(RenderError, match="not a Kubernetes object"):
        parse_manifests("- a\n- b\n")


def test_owned_objects_labels_refs_namespace_hash():
    objs = owned_objects([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tts"}}], OWNER)
    meta = objs[0]["metadata"]
    assert meta["namespace"] == "team-a"
    assert meta["labels"][OWNER_LABEL] == "1234-uid"
    ref = meta["ownerReferences"][0]
    assert ref == {
        "apiVersion": "audio.higgs.dev/v1alpha1",
        "kind": "HiggsDeployment",
        "name": "tts",
        "uid": "1234-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["annotations"][RENDER_HASH_ANNOTATION] == object_hash(objs[0])


def test_owned_objects_rejects_foreign_kinds_and_namespaces():
    with pytest.raises(RenderError, match="ClusterRole"):
        owned_objects(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "x"},
                }
            ],
            OWNER,
        )
    with pytest.raises(RenderError, match="namespace other"):
        owned_objects(
            [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "other"}}], OWNER
        )


def test_hash_changes_with_content():
    a = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}}
    b = {**a, "data": {"k": "2"}}
    assert object_hash(a) != object_hash(b)


def test_prune_set_only_own_unrendered():
    def obj(kind, name, uid="1234-uid", api="v1"):
        return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "labels": {OWNER_LABEL: uid}}}

    desired = [obj("Service", "tts"), obj("Deployment", "tts", api="apps/v1")]
    live = [
        obj("Service", "tts"),
        obj("Deployment", "tts", api="apps/v1"),
        obj("ConfigMap", "old"),
        obj("ConfigMap", "theirs", uid="other"),
        obj("PersistentVolumeClaim", "tts-model-cache"),
    ]
    assert [o["metadata"]["name"] for o in prune_set(live, desired, "1234-uid")] == ["old", "tts-model-cache"]


def test_helm_template_argv_names_release_namespace_values_and_kube_version():
    argv = helm_template_argv("/bin/helm", "/charts/a", "tts", "team-a", "/tmp/v.yaml", "1.35.4")
    assert argv == [
        "/bin/helm",
        "template",
        "tts",
        "/charts/a",
        "--namespace",
        "team-a",
        "--values",
        "/tmp/v.yaml",
        "--kube-version",
        "1.35.4",
    ]


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm not on PATH")
def test_real_chart_renders_to_appliable_objects():
    values = chart_values(
        "tts",
        {**SAMPLE, "modelCache": {"mode": "pvc", "pvc": {"accessModes": ["ReadWriteMany"]}}},
        TokenRef("hf", "hf_access_token"),
        "c0ffee",
        2,
        operator_namespace="higgs-system",
    )
    objs = owned_objects(parse_manifests(helm_template(str(CHART), "tts", "team-a", values)), OWNER)
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service"} <= kinds
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 2
    rendered = yaml.safe_dump(dep)
    assert "c0ffee" in rendered  # checksum annotation on the pod template
    assert "--sim-startup-seconds" in rendered
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "1234-uid" for o in objs)


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm not on PATH")
def test_single_node_cache_with_two_replicas_is_refused_naming_the_values():
    """An object admitted before the CRD's rule (or a cluster without it) still gets the chart's refusal,
    which the status then shows."""
    values = chart_values(
        "tts",
        {"modelCache": {"mode": "pvc"}},
        TokenRef("hf", "k"),
        None,
        2,
        operator_namespace="higgs-system",
    )
    refusal = r'modelCache.pvc.accessModes \["ReadWriteOnce"\] with replicaCount 2'
    with pytest.raises(RenderError, match=refusal):
        helm_template(str(CHART), "tts", "team-a", values)


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm not on PATH")
def test_semantic_model_reaches_the_download():
    values = chart_values(
        "tts",
        {"semanticModel": SAMPLE["semanticModel"]},
        TokenRef("hf", "k"),
        None,
        1,
        operator_namespace="higgs-system",
    )
    objs = parse_manifests(helm_template(str(CHART), "tts", "team-a", values))
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    args = pod["initContainers"][0]["args"]
    at = args.index("--cache-item")
    assert args[at : at + 4] == ["--cache-item", "org/teacher", "c" * 40, "/models/hub"]


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm not on PATH")
def test_leftover_server_generation_renders():
    spec = {**SAMPLE, "serverGeneration": "fork"}
    values = chart_values(
        "tts", spec, TokenRef("hf", "hf_access_token"), None, 1, operator_namespace="higgs-system"
    )
    objs = parse_manifests(helm_template(str(CHART), "tts", "team-a", values))
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "server")
    assert "audio=10" in server["args"]  # the fork's syntax, from limitMmPerPrompt
    assert "command" not in server


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm not on PATH")
def test_omni_spec_renders_vllm_omnis_command():
    spec = {
        **{k: v for k, v in SAMPLE.items() if k != "voicePresets"},
        "serverGeneration": "omni",
        "image": {"repository": "vllm/vllm-omni", "tag": "v0"},
    }
    values = chart_values(
        "tts", spec, TokenRef("hf", "hf_access_token"), None, 1, operator_namespace="higgs-system"
    )
    objs = parse_manifests(helm_template(str(CHART), "tts", "team-a", values))
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "server")
    assert server["command"] == ["vllm", "serve"]
    assert server["args"][:4] == [
        f"/models/org/model/{'a' * 40}",
        "--omni",
        "--deploy-config",
        "/etc/omni/higgs_audio_v2.yaml",
    ]
    # A leftover `current` (possible under the first CRD, kept while unchanged) is refused by the chart.
    bad = chart_values(
        "tts",
        {**SAMPLE, "serverGeneration": "current"},
        TokenRef("hf", "k"),
        None,
        1,
        operator_namespace="higgs-system",
    )
    with pytest.raises(RenderError, match="serverGeneration"):
        helm_template(str(CHART), "tts", "team-a", bad)


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm not on PATH")
def test_helm_error_is_reported():
    with pytest.raises(RenderError, match="helm template"):
        helm_template(str(CHART), "tts", "team-a", {"image": "not-a-mapping"})


# CRD fields, chart values and PASS_THROUGH are checked against each other (names, types, defaults,
# descriptions) in tests/chart/test_settings_source.py.
