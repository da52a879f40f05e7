"""Published ANI ensembles (ANI-1x, ANI-1ccx) in NeuroChem format, loaded offline as frozen models.

A NeuroChem model is a ``<name>.info`` file beside a ``<name>/`` folder. The ``.info`` file holds
four lines, paths relative to its own folder::

    ani-1x_8x/rHCNO-5.2R_16-3.5A_a4-8.params   AEV constants (and the element list, Atyp)
    ani-1x_8x/sae_linfit.dat                   self atomic energies (Hartree)
    ani-1x_8x/train                            ensemble prefix: members are train0, train1, ...
    8                                          ensemble size

Member ``k`` lives in ``<prefix>k/networks/``: per element ``ANN-<El>.nnf`` (bz2 network
description) and the ``.wparam``/``.bparam`` float32 files it names.

Each member becomes its own torchani :class:`~torchani.arch.ANI` module (AEV computer, atomic
networks, self energies), the same calling convention as the ``ani`` backend's modules, so
:meth:`AniBackend.convert` / :meth:`AniBackend.energy` run it unchanged and give eV. The paths are
resolved beside the ``.info`` file (torchani's own ``load_model_from_info_file`` looks in its
download folder instead), and every file read is hashed for provenance.

As ekd models (:func:`pretrained_models`) the members are ordinary ``ani`` models whose options
describe the published architecture (per-element layer sizes in ``element_hidden``), so they
save, load, label and evaluate like trained ones.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import OrderedDict
from pathlib import Path

import torch
from ase import units
from ase.data import atomic_numbers

from ekd.errors import DataError
from ekd.model import Model, resolve_device, seeded
from ekd.provenance import sha256_file

from ekd_ani.backend import AniOptions

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")  # before torchani's (lazy) import, as in backend.py

__all__ = ["LEVELS_OF_THEORY", "PretrainedEnsemble", "load_pretrained", "pretrained_models"]

#: the reference each published ensemble's energies are on
LEVELS_OF_THEORY = {"ANI-1x": "wB97X/6-31G(d)", "ANI-1ccx": "CCSD(T)*/CBS"}


@dataclasses.dataclass(frozen=True)
class PretrainedEnsemble:
    """The members of a published NeuroChem ensemble and what they were built from.

    Attributes:
        name: published model name (``"ANI-1x"``, ``"ANI-1ccx"``), from the ``.info`` file name.
        info_file: the ``.info`` file read.
        members: one frozen torchani ``ANI`` module per member (eval mode, no gradients on
            parameters), outputs in Hartree; run them through the ``ani`` backend for eV.
        member_dirs: each member's folder name (``train0``, ...).
        symbols: element symbols in the networks' order (``("H", "C", "N", "O")``).
        species: sorted atomic numbers the ensemble covers.
        self_energies: per-element self energies in eV (included in the members' energies).
        hidden: per-element hidden layer sizes of the networks (the same for every member).
        options: the ``ani`` backend options describing the architecture.
        files: sha256 of every file read (``.info``, constants, self energies, each member's
            ``.nnf``, ``.wparam`` and ``.bparam``), keyed by path relative to the ``.info``
            file's folder, POSIX style.
        member_files: for each member, the relative paths (keys of ``files``) that member used.
    """

    name: str
    info_file: Path
    members: list[torch.nn.Module]
    member_dirs: list[str]
    symbols: tuple[str, ...]
    species: list[int]
    self_energies: dict[int, float]
    hidden: dict[str, tuple[int, ...]]
    options: AniOptions
    files: dict[str, str]
    member_files: list[list[str]]

    def provenance(self, member: int | None = None) -> dict:
        """Plain-type record of the source (for ``Model.info`` or a run's provenance)."""
        keys = list(self.files) if member is None else self.member_files[member]
        record = {
            "name": self.name,
            "level_of_theory": LEVELS_OF_THEORY.get(self.name),
            "format": "neurochem",
            "info_file": str(self.info_file),
            "ensemble_size": len(self.members),
            "hidden": {s: list(h) for s, h in self.hidden.items()},
            "self_energies_eV": {str(z): e for z, e in self.self_energies.items()},
            "files": {k: self.files[k] for k in keys},
        }
        if member is not None:
            record["member"] = member
            record["member_dir"] = self.member_dirs[member]
        return record


def load_pretrained(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> PretrainedEnsemble:
    """Load a published NeuroChem ensemble from its model folder or its ``.info`` file.

    Args:
        path: the model folder (``.../ani-1x_8x``, with ``ani-1x_8x.info`` beside it or a single
            ``.info`` file inside it) or the ``.info`` file itself.
        dtype: floating dtype of the members (weights are float32 in the files, exact in float64).
        device: where the members live (``"auto"``: CUDA when present).

    Raises:
        DataError: the path does not exist, is not a NeuroChem model (no ``.info``, constants or
            self-energy file), or a member's network or weight file is missing or malformed;
            the message names the file (and the member).
    """
    info_file = _find_info(Path(path))
    root = info_file.parent
    const_file, sae_file, prefix, size = _read_info(info_file)
    constants, symbols = _read_constants(const_file)
    energies = _read_self_energies(sae_file, symbols)
    species_of = _atomic_numbers(symbols, const_file)

    files: dict[str, str] = {}

    def record(file: Path) -> str:
        key = _relative(file, root)
        if key not in files:
            files[key] = sha256_file(file)
        return key

    shared = [record(info_file), record(const_file), record(sae_file)]
    members, member_dirs, member_files, hidden = [], [], [], None
    device = resolve_device(str(device))
    with seeded(0, dtype):  # default dtype = dtype: self energies and weights are created in it
        for index in range(size):
            member_dir = prefix.parent / f"{prefix.name}{index}"
            networks, used = _load_networks(symbols, member_dir, index)
            sizes = {s: tuple(int(layer.out_features) for layer in net.layers) for s, net in networks.items()}
            if hidden is None:
                hidden = sizes
            elif sizes != hidden:
                raise DataError(f"{member_dir}: member {index} has layer sizes {sizes}, member 0 has {hidden}")
            members.append(_assemble(symbols, constants, networks, energies).to(device=device, dtype=dtype))
            member_dirs.append(member_dir.name)
            member_files.append(shared + [record(f) for f in used])
    for member in members:
        member.requires_grad_(False)
        member.eval()
    return PretrainedEnsemble(
        name=_published_name(info_file),
        info_file=info_file,
        members=members,
        member_dirs=member_dirs,
        symbols=tuple(symbols),
        species=sorted(species_of.values()),
        self_energies={species_of[s]: e * units.Hartree for s, e in zip(symbols, energies)},
        hidden=hidden,
        options=_options(constants, hidden),
        files=files,
        member_files=member_files,
    )


def pretrained_models(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> list[Model]:
    """The members of a published NeuroChem ensemble as frozen ekd ``ani`` models (eV, eV/Å).

    ``ekd.ensemble.Ensemble(pretrained_models(path))`` is the published ensemble's mean.
    ``Model.info["pretrained"]`` records the source, its level of theory and the sha256 of every
    file the member used.
    """
    ensemble = load_pretrained(path, dtype=dtype, device="cpu")
    models = []
    for index, module in enumerate(ensemble.members):
        model = Model.build("ani", ensemble.species, ensemble.self_energies, ensemble.options, dtype=dtype, device=device)
        model.module.load_state_dict(module.state_dict())
        model.module.requires_grad_(False)
        model.module.eval()
        model.info = {"pretrained": ensemble.provenance(index)}
        models.append(model)
    return models


# ---------------------------------------------------------------------------------------------
# reading the NeuroChem files


def _find_info(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path}: no such NeuroChem model folder or .info file")
    if path.is_file():
        if path.suffix != ".info":
            raise DataError(f"{path}: not a NeuroChem model (expected a model folder or its .info file)")
        return path
    beside = path.parent / f"{path.name}.info"
    if beside.is_file():
        return beside
    inside = sorted(p for p in path.glob("*.info") if p.is_file())
    if len(inside) == 1:
        return inside[0]
    raise DataError(f"{path}: not a NeuroChem model folder (no {beside.name} beside it and no single .info file in it)")


def _read_info(info_file: Path) -> tuple[Path, Path, Path, int]:
    try:
        lines = [line.strip() for line in info_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{info_file}: unreadable NeuroChem .info file ({type(error).__name__})") from None
    if len(lines) < 4 or not lines[3].isdigit() or int(lines[3]) < 1:
        raise DataError(f"{info_file}: not a NeuroChem .info file (expected 4 lines: constants file, self-energy file, ensemble prefix, size)")
    root = info_file.parent
    const_file, sae_file, prefix = (root.joinpath(*line.split("/")) for line in lines[:3])
    for what, file in (("AEV constants", const_file), ("self-energy", sae_file)):
        if not file.is_file():
            raise DataError(f"{info_file}: not a NeuroChem model folder: {what} file {file} is missing")
    return const_file, sae_file, prefix, int(lines[3])


def _read_constants(const_file: Path):
    from torchani.neurochem import load_aev_constants_and_symbols

    try:
        constants, symbols = load_aev_constants_and_symbols(const_file)
    except Exception as error:  # torchani raises NeurochemParseError, KeyError or UnboundLocalError
        raise DataError(f"{const_file}: not a NeuroChem AEV constants file ({type(error).__name__})") from None
    return constants, list(symbols)


def _read_self_energies(sae_file: Path, symbols: list[str]) -> list[float]:
    """Hartree, in the order of ``symbols``; lines read ``<El>,<index>=<energy>``."""
    found: dict[str, tuple[int, float]] = {}
    try:
        for line in sae_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                key, value = line.split("=")
                symbol, index = key.split(",")
                found[symbol.strip()] = (int(index), float(value))
    except (OSError, ValueError, UnicodeDecodeError):
        raise DataError(f"{sae_file}: not a NeuroChem self-energy file (lines '<El>,<index>=<Hartree>')") from None
    order = [found.get(s, (None,))[0] for s in symbols]
    if order != list(range(len(symbols))):
        raise DataError(f"{sae_file}: self energies {sorted(found, key=lambda s: found[s][0])} do not match the AEV elements {symbols}")
    return [found[s][1] for s in symbols]


def _atomic_numbers(symbols: list[str], const_file: Path) -> dict[str, int]:
    unknown = [s for s in symbols if s not in atomic_numbers]
    if unknown:
        raise DataError(f"{const_file}: unknown element symbol(s) {unknown}")
    return {s: atomic_numbers[s] for s in symbols}


def nnf_layers(nnf: Path) -> list:
    """The layer records (weight and bias file names and sizes) of a NeuroChem network file.

    torchani has no public function for this (``load_atomic_network`` loads the weights without
    naming their files), so this is the one place that uses its private ``_decompress_nnf`` and
    ``_parse_nnf``; ``tests/test_pretrained.py`` fails loudly when torchani changes them.
    """
    from torchani.neurochem import _decompress_nnf, _parse_nnf

    return _parse_nnf(_decompress_nnf(nnf.read_bytes()))


def _load_networks(symbols: list[str], member_dir: Path, index: int):
    """The atomic networks of one member and every file they were read from (nnf first)."""
    from torchani.neurochem import NeurochemParseError, load_atomic_network

    folder = member_dir / "networks"
    where = f"member {index} ({member_dir.name})"
    if not folder.is_dir():
        raise DataError(f"{folder}: {where}: network folder is missing")
    networks, used = OrderedDict(), []
    for symbol in symbols:
        nnf = folder / f"ANN-{symbol}.nnf"
        if not nnf.is_file():
            raise DataError(f"{nnf}: {where}: network file of {symbol} is missing")
        try:
            specs = nnf_layers(nnf)
        except Exception:
            raise DataError(f"{nnf}: {where}: not a NeuroChem network file") from None
        used.append(nnf)
        for spec in specs:
            for name, numel in ((spec.weights, spec.weight_numel), (spec.biases, spec.bias_numel)):
                file = folder / name
                if not file.is_file():
                    raise DataError(f"{file}: {where}: weight file of {symbol} is missing")
                if file.stat().st_size != 4 * numel:
                    raise DataError(f"{file}: {where}: {file.stat().st_size} bytes, expected {4 * numel} ({numel} float32)")
                used.append(file)
        try:
            networks[symbol] = load_atomic_network(nnf)
        except (NeurochemParseError, AssertionError) as error:
            raise DataError(f"{nnf}: {where}: unsupported network ({error})") from None
    return networks, used


def _assemble(symbols, constants, networks, energies) -> torch.nn.Module:
    """One member as a torchani ANI module (as the ``ani`` backend builds them: pyaev, all pairs)."""
    from torchani.aev import AEVComputer
    from torchani.arch import ANI
    from torchani.nn import ANINetworks
    from torchani.sae import SelfEnergy

    aev_computer = AEVComputer.from_constants(
        radial_cutoff=constants.radial_cutoff,
        angular_cutoff=constants.angular_cutoff,
        radial_eta=constants.radial_eta,
        radial_shifts=constants.radial_shifts,
        angular_eta=constants.angular_eta,
        angular_zeta=constants.angular_zeta,
        angular_shifts=constants.angular_shifts,
        sections=constants.sections,
        num_species=len(symbols),
        strategy="pyaev",
        cutoff_fn="cosine",
        neighborlist="all_pairs",
    )
    return ANI(symbols, aev_computer, ANINetworks(networks), SelfEnergy(symbols, energies), periodic_table_index=True)


def _options(constants, hidden: dict[str, tuple[int, ...]]) -> AniOptions:
    """The ``ani`` options describing this AEV and these networks (NeuroChem networks are CELU(0.1))."""
    return AniOptions(
        radial_cutoff=constants.radial_cutoff,
        angular_cutoff=constants.angular_cutoff,
        radial_shifts=len(constants.radial_shifts),
        angular_shifts=len(constants.angular_shifts),
        angle_sections=len(constants.sections),
        radial_eta=constants.radial_eta,
        angular_eta=constants.angular_eta,
        angular_zeta=constants.angular_zeta,
        radial_start=constants.radial_shifts[0],
        angular_start=constants.angular_shifts[0],
        cutoff_fn="cosine",
        hidden=next(iter(hidden.values())),
        element_hidden=hidden,
        activation="celu",
    )


def _published_name(info_file: Path) -> str:
    """``ani-1x_8x.info`` → ``ANI-1x``; other names are kept as they are."""
    match = re.fullmatch(r"ani-(\w+?)_\d+x", info_file.stem, flags=re.IGNORECASE)
    return f"ANI-{match[1]}" if match else info_file.stem


def _relative(file: Path, root: Path) -> str:
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return file.as_posix()
