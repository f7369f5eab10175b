"""Generate a StructureDefinition snapshot from its differential and its base's snapshot.

Profiles are often published (and always authored, by us and in the official test suite) as
differentials only; every checker reads the snapshot, so the store completes such profiles on
first use. The algorithm follows the FHIR rules the validators rely on:

* the base snapshot is copied and each differential element is merged onto the element with the
  same id (ids without slice names are rebuilt from ``path`` + ``sliceName`` for old profiles);
* constraining below a data type (``Patient.identifier.system``), a profiled type
  (``extension:x.value[x]`` from the extension's definition) or a ``contentReference`` unfolds the
  children of that element first;
* a ``sliceName`` creates the slice after the slicing entry, its existing slices and descendants;
* choice elements may be named by their type (``valueQuantity`` for ``value[x]``): one allowed
  type means the choice element itself, several make a type slice ``value[x]:valueQuantity``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from adapter.conformance.loader import ConformanceError

if TYPE_CHECKING:
    from adapter.conformance.store import ConformanceStore


class SnapshotError(ConformanceError):
    """A snapshot cannot be generated from a differential."""


_NOT_MERGED = frozenset({"id", "path", "sliceName"})
_REPLACED_LISTS = frozenset({"type", "representation", "alias", "code"})
FHIRPATH_TYPE_PREFIX = "http://hl7.org/fhirpath/System."


def diff_element_ids(elements: list[dict]) -> list[str]:
    """The id of each differential element; computed from path and sliceName when absent."""
    current_slice: dict[str, str] = {}
    ids: list[str] = []
    for el in elements:
        path = el.get("path")
        if not isinstance(path, str) or not path:
            raise SnapshotError(f"differential element without path: {el.get('id')!r}")
        if isinstance(el.get("id"), str) and el["id"]:
            ids.append(el["id"])
            continue
        parts = path.split(".")
        segs = []
        for i, part in enumerate(parts[:-1]):
            prefix = ".".join(parts[: i + 1])
            segs.append(f"{part}:{current_slice[prefix]}" if prefix in current_slice else part)
        # a restated path ends the slices of itself and below
        for key in [k for k in current_slice if k == path or k.startswith(path + ".")]:
            del current_slice[key]
        last = parts[-1]
        if el.get("sliceName"):
            current_slice[path] = el["sliceName"]
            last = f"{last}:{el['sliceName']}"
        segs.append(last)
        ids.append(".".join(segs))
    return ids


def merge_element(target: dict, diff: dict) -> None:
    """Apply one differential element's constraints onto the snapshot element (in place)."""
    for key, value in diff.items():
        if key in _NOT_MERGED:
            continue
        if key == "constraint":
            existing = target.setdefault("constraint", [])
            for c in value:
                existing[:] = [e for e in existing if e.get("key") != c.get("key")]
                existing.append(copy.deepcopy(c))
        elif key == "binding":
            binding = dict(target.get("binding", {}))
            binding.update(copy.deepcopy(value))
            if "valueSet" not in value and value.get("strength") and "valueSet" not in binding:
                binding.pop("valueSet", None)
            target["binding"] = binding
        elif key == "slicing":
            slicing = dict(target.get("slicing", {}))
            slicing.update(copy.deepcopy(value))
            target["slicing"] = slicing
        elif key == "condition":
            target["condition"] = sorted(set(target.get("condition", [])) | set(value))
        elif key == "extension":
            urls = {e.get("url") for e in value}
            kept = [e for e in target.get("extension", []) if e.get("url") not in urls]
            target["extension"] = kept + copy.deepcopy(value)
        elif key.startswith(("fixed", "pattern")):
            # a profile's fixed/pattern value replaces any inherited one of either kind
            for k in [k for k in target if k.startswith(("fixed", "pattern"))]:
                del target[k]
            target[key] = copy.deepcopy(value)
        else:
            target[key] = copy.deepcopy(value) if key in _REPLACED_LISTS or isinstance(value, dict) else value


class _Builder:
    """The snapshot under construction: an ordered list of elements addressed by id."""

    def __init__(self, sd: dict, store: ConformanceStore, elements: list[dict]) -> None:
        self.sd = sd
        self.url = sd.get("url", "?")
        self.store = store
        self.elements = elements
        self.specialization = sd.get("derivation") == "specialization"
        self.aliases: dict[str, str] = {}
        # elements as inherited, before this differential touched them: slices start from these
        self.inherited: dict[str, dict] = {}

    # -- navigation -------------------------------------------------------------------------
    def index(self, element_id: str) -> int | None:
        for i, el in enumerate(self.elements):
            if el.get("id") == element_id:
                return i
        return None

    def subtree_end(self, i: int) -> int:
        """Index after element i and all its descendants and slices."""
        root = self.elements[i]["id"]
        # a slice's re-slices ("x:a/b") follow it, after its own children
        reslice = root + "/" if ":" in root.rsplit(".", 1)[-1] else None
        j = i + 1
        while j < len(self.elements):
            eid = self.elements[j]["id"]
            if not (eid.startswith((root + ".", root + ":")) or (reslice and eid.startswith(reslice))):
                break
            j += 1
        return j

    def has_children(self, i: int) -> bool:
        root = self.elements[i]["id"]
        return i + 1 < len(self.elements) and self.elements[i + 1]["id"].startswith(root + ".")

    # -- unfolding --------------------------------------------------------------------------
    def _children_source(self, el: dict) -> tuple[list[dict], dict, list[dict] | None]:
        """The elements to unfold below ``el``, the element they are relative to, and for a
        contentReference the type that replaces it."""
        ref = el.get("contentReference")
        if ref:
            ref_path = ref.split("#", 1)[-1]
            type_sd = self.store.structure_definition(ref_path.split(".", 1)[0])
            if type_sd is None:
                raise SnapshotError(f"{self.url}: contentReference {ref} cannot be resolved")
            elems = type_sd["snapshot"]["element"]
            start = next((k for k, e in enumerate(elems) if e.get("path") == ref_path and ":" not in e["id"]),
                         None)
            if start is None:
                raise SnapshotError(f"{self.url}: contentReference {ref} cannot be resolved")
            ref_id = elems[start]["id"]
            subtree = [e for e in elems[start + 1:] if e["id"].startswith(ref_id + ".")]
            return subtree, elems[start], elems[start].get("type") or [{"code": "BackboneElement"}]
        types = el.get("type") or []
        if len(types) != 1:
            raise SnapshotError(
                f"{self.url}: cannot constrain below {el['id']}: it has {len(types)} types; "
                "name one type (e.g. valueQuantity) or restrict the type first")
        t = types[0]
        code = t.get("code", "")
        if code.startswith(FHIRPATH_TYPE_PREFIX):
            raise SnapshotError(f"{self.url}: {el['id']} is a primitive value and has no children")
        profiles = t.get("profile") or []
        target = profiles[0] if len(profiles) == 1 else code
        type_sd = self.store.structure_definition(target)
        if type_sd is None and target != code:
            type_sd = self.store.structure_definition(code)
        if type_sd is None:
            raise SnapshotError(f"{self.url}: type {target} of {el['id']} is not known")
        elems = type_sd["snapshot"]["element"]
        return elems[1:], elems[0], None

    def unfold(self, i: int) -> None:
        """Insert the children of element i (from its type, profile or contentReference)."""
        el = self.elements[i]
        source, root, ref_type = self._children_source(el)
        root_id, root_path = root.get("id", root["path"]), root["path"]
        new = []
        for child in source:
            c = copy.deepcopy(child)
            c["id"] = el["id"] + c.get("id", c["path"])[len(root_id):]
            c["path"] = el["path"] + c["path"][len(root_path):]
            new.append(c)
        if ref_type is not None:  # the children are explicit now; the reference would say it twice
            del el["contentReference"]
            el["type"] = copy.deepcopy(ref_type)
        self.elements[i + 1:i + 1] = new

    # -- resolution -------------------------------------------------------------------------
    def _child(self, parent_i: int, name: str, create: bool) -> int:
        parent = self.elements[parent_i]
        wanted = f"{parent['id']}.{name}"
        found = self.index(wanted)
        if found is not None:
            return found
        if not self.has_children(parent_i) and parent.get("sliceName") and self._copy_root_children(parent_i):
            found = self.index(wanted)
            if found is not None:
                return found
        if not self.has_children(parent_i) and (parent.get("type") or parent.get("contentReference")):
            types = parent.get("type") or []
            code = types[0].get("code", "") if len(types) == 1 else ""
            # a logical model's own backbone elements get their children from the differential
            new_backbone = self.specialization and code in ("BackboneElement", "Element")
            unfoldable = bool(code) and not new_backbone and not code.startswith(FHIRPATH_TYPE_PREFIX)
            if parent.get("contentReference") or unfoldable:
                self.unfold(parent_i)
                found = self.index(wanted)
                if found is not None:
                    return found
        choice = self._choice(parent_i, name)
        if choice is not None:
            return choice
        if create and self.specialization:
            return self._new_element(parent_i, name)
        if len(parent.get("type") or []) > 1 and not self.has_children(parent_i):
            self._children_source(parent)  # raises the explanation: which type is meant?
        raise SnapshotError(f"{self.url}: element {wanted} does not exist in the base definition")

    def _copy_root_children(self, slice_i: int) -> bool:
        """Give a slice the children its slicing entry has (a backbone element's children are not
        in any type definition). Returns False when the entry has none to copy."""
        slice_el = self.elements[slice_i]
        slice_id = slice_el["id"]
        root_id = slice_id[: slice_id.rfind(":")]
        root_i = self.index(root_id)
        if root_i is None or not self.has_children(root_i):
            return False
        if any(t.get("profile") for t in slice_el.get("type") or []):
            return False  # a profiled slice takes its children from its profile
        new = []
        for k in range(root_i + 1, self.subtree_end(root_i)):
            el = self.elements[k]
            if not el["id"].startswith(root_id + "."):
                break  # the slices of the root follow its children
            c = copy.deepcopy(self.inherited.get(el["id"], el))
            c["id"] = slice_id + c["id"][len(root_id):]
            new.append(c)
        self.elements[slice_i + 1:slice_i + 1] = new
        return True

    def _choice(self, parent_i: int, name: str) -> int | None:
        """``valueQuantity`` -> ``value[x]`` (or its type slice); ``value[x]`` -> ``valueString``."""
        pid = self.elements[parent_i]["id"]
        if name.endswith("[x]"):
            stem = name[:-3]
            for k in range(parent_i + 1, self.subtree_end(parent_i)):
                eid = self.elements[k]["id"]
                rest = eid[len(pid) + 1:]
                direct = eid.startswith(pid + ".") and "." not in rest and ":" not in rest
                if direct and rest.startswith(stem) and rest[len(stem):][:1].isupper():
                    return k
            return None
        for k in range(parent_i + 1, self.subtree_end(parent_i)):
            eid = self.elements[k]["id"]
            rest = eid[len(pid) + 1:]
            if not eid.startswith(pid + ".") or not rest.endswith("[x]") or "." in rest or ":" in rest:
                continue
            stem = rest[:-3]
            if not name.startswith(stem):
                continue
            suffix = name[len(stem):]
            types = self.elements[k].get("type") or []
            match = [t for t in types if _type_suffix(t.get("code", "")) == suffix]
            if not match:
                continue
            if len(types) == 1:
                self.aliases[f"{pid}.{name}"] = eid
                return k
            slice_id = f"{eid}:{name}"
            existing = self.index(slice_id)
            if existing is not None:
                return existing
            root = self.elements[k]
            root.setdefault("slicing", {"discriminator": [{"type": "type", "path": "$this"}],
                                        "ordered": False, "rules": "open"})
            new = copy.deepcopy({key: v for key, v in root.items() if key != "slicing"})
            new["id"] = slice_id
            new["sliceName"] = name
            new["type"] = copy.deepcopy(match)
            end = self.subtree_end(k)
            self.elements.insert(end, new)
            return end
        return None

    def element_constraints(self) -> list[dict]:
        """The constraints every element inherits from Element (ele-1), for new logical-model elements."""
        element_sd = self.store.structure_definition("Element")
        if element_sd is None:
            return []
        return copy.deepcopy(element_sd["snapshot"]["element"][0].get("constraint", []))

    def _new_element(self, parent_i: int, name: str) -> int:
        parent = self.elements[parent_i]
        path = f"{parent['path']}.{name.split(':')[0]}"
        new = {"id": f"{parent['id']}.{name}", "path": path, "min": 0, "max": "*",
               "base": {"path": path, "min": 0, "max": "*"}}
        if constraints := self.element_constraints():
            new["constraint"] = constraints
        end = self.subtree_end(parent_i)
        self.elements.insert(end, new)
        return end

    def _slice(self, root_i: int, slice_name: str, create: bool) -> int:
        root = self.elements[root_i]
        slice_id = f"{root['id']}:{slice_name}"
        found = self.index(slice_id)
        if found is not None:
            return found
        if not create:
            raise SnapshotError(f"{self.url}: slice {slice_id} is used before it is defined")
        if "/" in slice_name:
            return self._reslice(root_i, slice_name)
        base = self.inherited.get(root["id"], root)
        new = {k: copy.deepcopy(v) for k, v in base.items() if k not in ("slicing", "sliceName")}
        new["id"] = slice_id
        new["sliceName"] = slice_name
        # a slice keeps the type's own definition, not the slice children of the slicing entry
        end = self.subtree_end(root_i)
        self.elements.insert(end, new)
        return end

    def _reslice(self, root_i: int, slice_name: str) -> int:
        """Re-slicing (profiling.html): the slice ``a/b`` starts as a copy of the slice ``a``
        with its children (not its slicing), placed after ``a``'s children and re-slices."""
        root_id = self.elements[root_i]["id"]
        parent_id = f"{root_id}:{slice_name.rsplit('/', 1)[0]}"
        parent_i = self.index(parent_id)
        if parent_i is None:
            raise SnapshotError(f"{self.url}: re-slice {root_id}:{slice_name} of undefined {parent_id}")
        slice_id = f"{root_id}:{slice_name}"
        new = []
        for k in range(parent_i, self.subtree_end(parent_i)):
            el = self.elements[k]
            if k > parent_i and not el["id"].startswith(parent_id + "."):
                continue  # the other re-slices of the parent
            c = copy.deepcopy(el)  # as this profile constrains it so far: a re-slice is a subset
            c["id"] = slice_id + c["id"][len(parent_id):]
            if k == parent_i:
                c.pop("slicing", None)
                c["sliceName"] = slice_name
            new.append(c)
        end = self.subtree_end(parent_i)
        self.elements[end:end] = new
        return end

    def resolve(self, element_id: str) -> int:
        """Index of the snapshot element for a differential id, creating slices and unfolding types."""
        element_id = self.aliases.get(element_id, element_id)
        found = self.index(element_id)
        if found is not None:
            return found
        segments = _split_id(element_id)
        root_id = segments[0]
        cur = self.index(root_id)
        if cur is None:
            raise SnapshotError(
                f"{self.url}: {element_id} does not start with the type {self.elements[0]['id']}")
        for n, seg in enumerate(segments[1:], start=1):
            last = n == len(segments) - 1
            name, _, slice_part = seg.partition(":")
            cur_id = self.elements[cur]["id"]
            alias = self.aliases.get(f"{cur_id}.{seg}")
            if alias is not None and (k := self.index(alias)) is not None:
                cur = k
                continue
            cur = self._child(cur, name, create=last)
            if slice_part:
                cur = self._slice(cur, slice_part, create=True)
        return cur


def _split_id(element_id: str) -> list[str]:
    return element_id.split(".")


def _type_suffix(code: str) -> str:
    return code[:1].upper() + code[1:]


def _base_elements(sd: dict, store: ConformanceStore) -> list[dict]:
    base_url = sd.get("baseDefinition")
    if not base_url:
        if sd.get("derivation") == "specialization" or sd.get("type") in ("Element", "Base", "Resource"):
            return []
        raise SnapshotError(f"{sd.get('url')}: no baseDefinition, cannot generate a snapshot")
    base = store.structure_definition(base_url)
    if base is None:
        if sd.get("derivation") == "specialization" and base_url.rstrip("/").endswith("/Base"):
            return []  # logical models on R5's Base, which R4 does not define
        raise SnapshotError(f"{sd.get('url')}: base definition {base_url} is not known")
    return copy.deepcopy(base["snapshot"]["element"])


def _rename_root(elements: list[dict], new_root: str) -> None:
    if not elements:
        return
    old_root = elements[0]["path"]
    if old_root == new_root:
        return
    for el in elements:
        for key in ("id", "path"):
            value = el.get(key, el["path"])
            if value == old_root or value.startswith((old_root + ".", old_root + ":")):
                el[key] = new_root + value[len(old_root):]


def _ensure_ids(elements: list[dict]) -> None:
    """Old snapshots may lack ids; derive them (the store addresses elements by id)."""
    if all(isinstance(el.get("id"), str) for el in elements):
        return
    for el, eid in zip(elements, diff_element_ids(elements), strict=True):
        el["id"] = eid


def generate_snapshot(sd: dict, store: ConformanceStore) -> dict:
    """Return a copy of ``sd`` with ``snapshot`` built from ``differential`` and the base snapshot."""
    diff = (sd.get("differential") or {}).get("element") or []
    if not isinstance(diff, list):
        raise SnapshotError(f"{sd.get('url')}: differential.element is not a list")
    elements = _base_elements(sd, store)
    _ensure_ids(elements)
    first = diff[0] if diff and isinstance(diff[0], dict) else {}
    diff_root = first["path"].split(".", 1)[0] if isinstance(first.get("path"), str) else None
    new_root = diff_root or (elements[0]["path"] if elements else sd.get("type"))
    if not new_root:
        raise SnapshotError(f"{sd.get('url')}: cannot tell the root element name")
    if sd.get("derivation") == "specialization":
        _rename_root(elements, new_root)
    builder = _Builder(sd, store, elements)
    if not elements:
        root = {"id": new_root, "path": new_root, "min": 0, "max": "*",
                "base": {"path": new_root, "min": 0, "max": "*"}}
        if constraints := builder.element_constraints():
            root["constraint"] = constraints
        elements.append(root)
    for el, eid in zip(diff, diff_element_ids(diff), strict=True):
        i = builder.resolve(eid)
        target = builder.elements[i]
        builder.inherited.setdefault(target["id"], copy.deepcopy(target))
        merge_element(target, el)
    result: dict[str, Any] = dict(sd)
    result["snapshot"] = {"element": builder.elements}
    return result
