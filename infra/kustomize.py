"""Render a kustomization of deploy/k8s the way `kubectl kustomize` does, for the subset these
manifests use, so `make test` validates them without a kustomize binary: `resources` (files, and
directories holding a kustomization.yaml, recursively), `patches` given by `path` (strategic
merge: maps merged, lists of named entries merged by name, other lists replaced), `images`
(`newName`, `newTag`) and `namespace` (set on every namespaced object). Anything else in a
kustomization is refused rather than ignored.

`python -m infra.kustomize deploy/k8s/overlays/production` prints the rendered YAML.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "patches", "images", "namespace"}
# Kinds that live outside namespaces.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}

Manifest = dict[str, Any]


def render(directory: Path) -> list[Manifest]:
    """The objects the kustomization in `directory` makes."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise ValueError(f"{directory}: kustomization fields not rendered here: {sorted(unknown)}")
    objects: list[Manifest] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in spec.get("patches", []):
        for change in yaml.safe_load_all((directory / patch["path"]).read_text()):
            target = _find(objects, change, directory / patch["path"])
            objects[objects.index(target)] = merge(target, change)
    for image in spec.get("images", []):
        _set_image(objects, image)
    if namespace := spec.get("namespace"):
        for obj in objects:
            if obj["kind"] not in CLUSTER_KINDS:
                obj.setdefault("metadata", {})["namespace"] = namespace
    return objects


def merge(base: Any, change: Any) -> Any:
    """A strategic merge of `change` into `base` (a copy)."""
    if isinstance(base, dict) and isinstance(change, dict):
        merged = dict(base)
        for key, value in change.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(change, list) and _named(base) and _named(change):
        merged_list = list(base)
        for item in change:
            same = [i for i, b in enumerate(merged_list) if b["name"] == item["name"]]
            if same:
                merged_list[same[0]] = merge(merged_list[same[0]], item)
            else:
                merged_list.append(item)
        return merged_list
    return change


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _find(objects: list[Manifest], change: Manifest, where: Path) -> Manifest:
    for obj in objects:
        if obj["kind"] == change["kind"] and obj["metadata"]["name"] == change["metadata"]["name"]:
            return obj
    raise ValueError(f"{where}: no {change['kind']} {change['metadata']['name']} to patch")


def _set_image(objects: list[Manifest], image: dict[str, str]) -> None:
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def main(argv: list[str]) -> int:
    """Print the rendered kustomization named by argv[0]."""
    sys.stdout.write(yaml.safe_dump_all(render(Path(argv[0])), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
