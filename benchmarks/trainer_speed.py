"""Seconds per epoch and peak memory of ekd's trainer against the backends' own trainers.

What: for each backend (MACE, NequIP, HIP-NN) and mode (energy only; energy + forces) three trainers train
the same model on the same data with batch size 32 in float32 on one CPU thread:

* ``ekd``: :func:`ekd.train.train`, which converts every batch once (tensors, neighbour edges and
  the backend's inputs) and keeps the converted batches in memory for all epochs;
* the backend's own trainer, ``mace_run_train`` (mace-torch 0.3.16), ``nequip-train`` (nequip
  0.19, Lightning) or ``hippynn.experiment.setup_and_train`` (hippynn 0.1.3, on a hippynn
  ``Database`` of the same arrays, padded), given the same hyperparameters, E0s / energy shifts
  and neighbour normalisation;
* ``hand loop``: a minimal PyTorch loop over the same ekd model that builds every batch anew at
  every step (no cache, plain Adam, no EMA): what ekd's cache buys.

Why: the cache makes ekd's epochs cheap but costs memory; this shows both against the trainers
people would otherwise use. Every trainer validates on the validation split after every epoch.

How: every run is its own subprocess (``OMP_NUM_THREADS=1``, ``CUDA_VISIBLE_DEVICES=""``), one at
a time, started by a small launcher whose ``wait4`` gives the run's peak RSS (``ru_maxrss``). A
python that only imports torch and the trainer's libraries gives the baseline, so the table also
shows memory above the imports. An epoch is training plus validation (and what the trainer saves
then); the first one builds lazy state (neighbour lists, e3nn code), so the median and spread are
over the later epochs. ekd builds its cache before epoch 1, in no epoch's time: the table gives
its size (tensor bytes of the cached training and validation batches, built as the trainer
builds them) and the seconds it takes to build. Data: the embedded reference set (1,600
conformations of 3-8 atoms, H C N O, eV and eV/Å), split (0.8, 0.1, 0.1) with seed 0. A full run
takes long on 2 cores; try it small first::

    .venv/bin/python benchmarks/trainer_speed.py                        # 4 epochs, all of it
    .venv/bin/python benchmarks/trainer_speed.py --backends mace --modes energy \\
        --conformations 64 --epochs 2 --out build/trainer-speed-dev/smoke.json

Writes benchmarks/results/trainer_speed.json (``--out``); run files go to ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BATCH_SIZE = 32
FORCE_WEIGHT = 0.1
MODES = ("energy", "energy+forces")
TRAINERS = ("ekd", "native", "hand")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
NATIVE = {"mace": "mace_run_train", "nequip": "nequip-train", "hippynn": "hippynn.experiment"}

#: how each trainer composes its batches: (short label for the table, full description)
BATCHES = {
    "ekd": ("converted once, cached", "ekd converts each batch once before epoch 1 (Batch.from_frames: tensors and neighbour edges, plus the backend's convert) and keeps them in memory; epochs reuse them in a new order, their composition fixed; validation in batches of 256 (the others: 32)"),
    "mace": ("AtomicData once, PyG collate/step", "mace_run_train builds one AtomicData (with its neighbour list) per conformation once; a torch_geometric DataLoader shuffles and collates new batches every epoch (drop_last=True)"),
    "nequip": ("Lightning: NL + collate/step", "nequip's ASEDataModule keeps the parsed structures; every access runs its transforms again (type mapping, neighbour list) and the DataLoader collates new shuffled batches every epoch"),
    "hippynn": ("padded arrays, DataLoader + pair finder/step", "hippynn's Database holds the conformations padded to the largest (species 0 for no atom); its DataLoader shuffles and collates batches every epoch and the model's OpenPairIndexer finds the pairs of every batch at every step; after each epoch it evaluates the validation split and 10 % of the training split (its default fraction_train_eval)"),
    "hand": ("Batch.from_frames/step", "the hand loop calls model.batch(part) (Batch.from_frames + the backend's convert) for every batch of every epoch, conformations shuffled per epoch; nothing cached"),
}

#: what a python that only imports each trainer's libraries holds (the RSS baseline)
IMPORTS = {
    "ekd": "import torch, ekd.train, ekd.plugins; ekd.plugins.get_backend('{backend}'); import {library}",
    "mace": "import torch, mace.cli.run_train",
    "nequip": "import torch, nequip.scripts.train",
    "hippynn": "import torch, hippynn.experiment",
}
LIBRARY = {"mace": "mace.modules", "nequip": "nequip.model", "hippynn": "hippynn.networks"}


# data and the model's settings ------------------------------------------------------------------
def benchmark_data(conformations: int | None):
    """(train, validation) of the embedded set; a seeded random ``conformations`` of train if given
    (the split keeps the file's order, grouped by molecule)."""
    import numpy as np

    from ekd import Dataset

    split = Dataset.embedded(with_forces=True).split((0.8, 0.1, 0.1), seed=0)
    if conformations is None:
        return split.train, split.validation
    chosen = np.random.default_rng(0).permutation(len(split.train))[:conformations]
    return split.train.subset(np.sort(chosen)), split.validation


def frames_for(mode: str, conformations: int | None):
    """The data as ekd trains on it in ``mode``: energy-only training sees no forces."""
    train, validation = benchmark_data(conformations)
    if mode == "energy":
        return train.without_forces(), validation.without_forces()
    return train, validation


def resolved_options(backend: str) -> dict:
    """The backend's options at ekd's CPU size (``small``) over its defaults."""
    import ekd
    from ekd.backend import validate_options
    from ekd.plugins import get_backend

    sized = ekd.RunConfig(size="small").sized_options(backend, {})
    return validate_options(get_backend(backend), sized).model_dump()


def data_statistics(backend: str, options: dict, train, validation):
    """(species, ekd's statistics of the training split): the E0s and avg_num_neighbors every
    trainer is given."""
    from ekd.backend import Statistics
    from ekd.plugins import get_backend

    found = get_backend(backend)
    species = sorted(set(train.elements) | set(validation.elements))
    return species, Statistics.of(train, species, found.cutoff(found.Options(**options)))


def write_extxyz(frames, path: Path) -> None:
    """Frames as extended XYZ with ``REF_energy`` (eV) and ``REF_forces`` (eV/Å), no calculator."""
    import ase.io

    images = []
    for i, atoms in enumerate(frames.to_atoms()):
        atoms.calc = None
        atoms.info["REF_energy"] = float(frames.energy[i])
        atoms.arrays["REF_forces"] = frames.forces[frames.atoms_of(i)]
        images.append(atoms)
    ase.io.write(path, images, format="extxyz")


# ekd and the hand loop (run inside a worker subprocess) ------------------------------------------
def train_config(mode: str, epochs: int):
    from ekd.train import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, force_weight=FORCE_WEIGHT if mode != "energy" else 0.0, device="cpu", dtype="float32")


def run_ekd(spec: dict) -> dict:
    """ekd's trainer; per-epoch seconds from its history.csv."""
    from ekd.train import train

    train_frames, val_frames = frames_for(spec["mode"], spec["conformations"])
    out = Path(spec["dir"]) / "ekd"
    train(spec["backend"], train_frames, val_frames, out, train_config(spec["mode"], spec["epochs"]), spec["options"], show_progress=False)
    with open(out / "history.csv") as handle:
        return {"epoch_seconds": [float(row["seconds"]) for row in csv.DictReader(handle)]}


def run_hand(spec: dict) -> dict:
    """A plain loop: Adam, shuffled batches built at every step, forces by autograd, validation."""
    import torch

    from ekd.model import Model
    from ekd.train import ekd_loss

    train_frames, val_frames = frames_for(spec["mode"], spec["conformations"])
    config = train_config(spec["mode"], spec["epochs"])
    species, statistics_ = data_statistics(spec["backend"], spec["options"], train_frames, val_frames)
    model = Model.build(spec["backend"], species, statistics_, spec["options"], seed=config.seed, dtype=torch.float32, device="cpu")
    optimizer = torch.optim.Adam(model.module.parameters(), lr=config.lr)
    on_forces = config.force_weight > 0

    def loss_of(part, create_graph: bool) -> torch.Tensor:
        batch = model.batch(part)
        batch.positions.requires_grad_(on_forces)
        energy = model.backend.energy(model.module, batch)
        forces = -torch.autograd.grad(energy.sum(), batch.positions, create_graph=create_graph)[0] if on_forces else None
        return ekd_loss(energy, forces, batch, config.energy_weight, config.force_weight)[0]

    seconds = []
    for epoch in range(config.epochs):
        started = time.perf_counter()
        model.module.train()
        for part in train_frames.batches(BATCH_SIZE, shuffle=True, seed=epoch):
            loss = loss_of(part, create_graph=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.module.eval()
        with torch.set_grad_enabled(on_forces):
            for part in val_frames.batches(BATCH_SIZE):
                loss_of(part, create_graph=False).detach()
        seconds.append(time.perf_counter() - started)
    return {"epoch_seconds": seconds}


def run_hippynn(spec: dict) -> dict:
    """hippynn's own training loop (``setup_and_train``) on the same HIP-NN, data and settings:
    its Database of padded arrays, its pair finder, E0 by its ``hierarchical_energy_initialization``
    (ekd's fit), Adam and a plateau schedule; epoch seconds from its metric tracker. Runs in the
    current directory (hippynn writes its files there)."""
    import numpy as np
    import torch

    import hippynn
    from hippynn.databases import Database
    from hippynn.experiment import SetupParams, assemble_for_training, setup_and_train
    from hippynn.experiment.controllers import PatienceController, RaiseBatchSizeOnPlateau
    from hippynn.graphs import inputs, loss, networks, physics, targets
    from hippynn.pretraining import hierarchical_energy_initialization

    hippynn.settings.PROGRESS, hippynn.settings.WARN_LOW_DISTANCES = None, False
    train_frames, val_frames = frames_for(spec["mode"], spec["conformations"])
    config, options, on_forces = train_config(spec["mode"], spec["epochs"]), spec["options"], spec["mode"] != "energy"
    species_list = data_statistics(spec["backend"], options, train_frames, val_frames)[0]
    torch.manual_seed(config.seed)
    species, positions = inputs.SpeciesNode(db_name="Z"), inputs.PositionsNode(db_name="R")
    network_kwargs = {key: options[key] for key in ("n_features", "n_sensitivities", "dist_soft_min", "dist_soft_max", "dist_hard_max",
                                                     "n_atom_layers", "n_interaction_layers", "sensitivity_type", "resnet")}
    network = networks.Hipnn("HIPNN", (species, positions), module_kwargs={**network_kwargs, "possible_species": [0, *species_list]})
    henergy = targets.HEnergyNode("HEnergy", network)
    henergy.mol_energy.db_name = "T"
    train_loss = loss.MSELoss.of_node(henergy)
    if on_forces:
        forces = physics.GradientNode("forces", (henergy, positions), sign=-1)
        forces.db_name = "F"
        train_loss = train_loss + FORCE_WEIGHT * loss.MSELoss.of_node(forces)
    training_modules, db_info = assemble_for_training(train_loss, {"Loss": train_loss})

    frames = [train_frames, val_frames, val_frames]  # (hippynn tests on a third split after training: the validation one again)
    widest = max(int(part.sizes.max()) for part in frames)
    arrays = {"Z": [], "R": [], "T": [], "F": []}
    for part in frames:
        for n in range(len(part)):
            rows = part.atoms_of(n)
            pad = widest - int(part.sizes[n])
            arrays["Z"].append(np.pad(part.numbers[rows], (0, pad)))
            arrays["R"].append(np.pad(part.positions[rows], ((0, pad), (0, 0))))
            arrays["T"].append([part.energy[n]])
            arrays["F"].append(np.pad(part.forces[rows], ((0, pad), (0, 0))) if part.forces is not None else np.zeros((widest, 3)))
    arr_dict = {"Z": np.array(arrays["Z"], dtype=np.int64), **{k: np.array(arrays[k], dtype=np.float32) for k in ("R", "T", "F")}}
    database = Database(arr_dict, **db_info, seed=config.seed, pin_memory=False, quiet=True)
    database.make_explicit_split("train", torch.arange(len(train_frames)))
    database.make_explicit_split("valid", torch.arange(len(train_frames), len(train_frames) + len(val_frames)))
    database.split_the_rest("test")
    hierarchical_energy_initialization(henergy, database, trainable_after=False)

    optimizer = torch.optim.Adam(training_modules.model.parameters(), lr=config.lr)
    scheduler = RaiseBatchSizeOnPlateau(optimizer=optimizer, max_batch_size=BATCH_SIZE, patience=config.lr_patience, factor=config.lr_factor)
    controller = PatienceController(optimizer=optimizer, scheduler=scheduler, batch_size=BATCH_SIZE, eval_batch_size=BATCH_SIZE,
                                    max_epochs=spec["epochs"], stopping_key="Loss", termination_patience=spec["epochs"] + 1)
    metrics = setup_and_train(training_modules=training_modules, database=database, setup_params=SetupParams(controller=controller, device="cpu"))
    return {"epoch_seconds": list(metrics.epoch_times)}


def run_worker(spec_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    spec = json.loads(spec_path.read_text())
    result = {"ekd": run_ekd, "hand": run_hand, "hippynn": run_hippynn}[spec["trainer"]](spec)
    (Path(spec["dir"]) / "result.json").write_text(json.dumps(result))


def ekd_cache(backend: str, options: dict, mode: str, conformations: int | None, epochs: int) -> dict:
    """ekd's cached batches, built as its trainer builds them (same partition, one thread): MB of
    their tensors and seconds to build them (before epoch 1: in no epoch's time)."""
    import torch

    from ekd.model import Model

    train_frames, val_frames = frames_for(mode, conformations)
    config = train_config(mode, epochs)
    species, statistics_ = data_statistics(backend, options, train_frames, val_frames)
    model = Model.build(backend, species, statistics_, options, dtype=torch.float32)
    torch.set_num_threads(1)
    started = time.perf_counter()
    parts = [*train_frames.batches(config.batch_size, shuffle=True, seed=config.seed), *val_frames.batches(max(config.batch_size, 256))]
    batches = [model.batch(part) for part in parts]
    seconds = time.perf_counter() - started
    storages = {}
    for batch in batches:
        tensors = [v for v in vars(batch).values() if isinstance(v, torch.Tensor)]
        inputs = batch.inputs.values() if isinstance(batch.inputs, dict) else [batch.inputs]  # (a backend's inputs: a dict or one tensor)
        tensors += [v for v in inputs if isinstance(v, torch.Tensor)]
        for tensor in tensors:  # count each storage once (the backend's inputs share some with the batch)
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return {"cache_mb": sum(storages.values()) / 2**20, "cache_build_s": seconds}


# the backends' own trainers --------------------------------------------------------------------
def mace_command(work: Path, files: dict, options: dict, statistics_, mode: str, epochs: int) -> list[str]:
    """mace_run_train flags for ekd's model and training settings."""
    from ekd.train import TrainConfig

    defaults = TrainConfig()
    flags = {
        "name": "speed", "seed": 0, "work_dir": work, "train_file": files["train"], "valid_file": files["valid"],
        "energy_key": "REF_energy", "forces_key": "REF_forces", "E0s": statistics_.reference_energies,
        "model": "ScaleShiftMACE", "interaction_first": "RealAgnosticInteractionBlock", "interaction": "RealAgnosticResidualInteractionBlock",
        "hidden_irreps": options["hidden_irreps"], "max_ell": options["max_ell"], "correlation": options["correlation"],
        "r_max": options["r_max"], "num_radial_basis": options["num_bessel"], "num_cutoff_basis": options["num_polynomial_cutoff"],
        "radial_MLP": list(options["radial_MLP"]), "MLP_irreps": options["MLP_irreps"], "num_interactions": options["num_interactions"],
        "gate": "silu", "avg_num_neighbors": statistics_.avg_num_neighbors, "compute_avg_num_neighbors": False,
        "scaling": "no_scaling", "mean": options["shift"], "std": options["scale"],
        "loss": "weighted", "energy_weight": defaults.energy_weight, "forces_weight": FORCE_WEIGHT if mode != "energy" else 0.0,
        "optimizer": "adamw", "lr": defaults.lr, "weight_decay": defaults.weight_decay, "scheduler": "ReduceLROnPlateau",
        "lr_factor": defaults.lr_factor, "scheduler_patience": defaults.lr_patience, "clip_grad": defaults.clip_grad,
        "ema_decay": defaults.ema_decay, "batch_size": BATCH_SIZE, "valid_batch_size": BATCH_SIZE,
        "max_num_epochs": epochs, "eval_interval": 1, "patience": epochs + 1,
        "default_dtype": "float32", "device": "cpu", "num_workers": 0, "pin_memory": False, "plot": False,
    }
    return [str(BIN / "mace_run_train"), "--ema", *(item for key, value in flags.items() for item in (f"--{key}", str(value)))]


MACE_EPOCH_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) INFO: (?:Initial|Epoch \d+): ")


def mace_epoch_seconds(log: Path) -> list[float]:
    """Seconds between MACE's validation lines (``Initial:``, ``Epoch 0:``, ...): one epoch each,
    training, validation and the previous epoch's checkpoint."""
    stamps = [datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f") for m in map(MACE_EPOCH_LINE.match, log.read_text().splitlines()) if m]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]


def nequip_config(work: Path, files: dict, options: dict, statistics_, mode: str, epochs: int) -> dict:
    """nequip-train's config for ekd's model (NequIPGNNModel) and training settings."""
    from ase.data import chemical_symbols

    from ekd.train import TrainConfig

    defaults = TrainConfig()
    types = [chemical_symbols[z] for z in sorted(statistics_.reference_energies)]
    on_forces = mode != "energy"
    loss = {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True, "coeffs": {"total_energy": defaults.energy_weight, "forces": FORCE_WEIGHT}} if on_forces else {"_target_": "nequip.train.EnergyOnlyLoss", "per_atom_energy": True}
    val_metrics = {"_target_": "nequip.train.EnergyForceMetrics"} if on_forces else {"_target_": "nequip.train.EnergyOnlyMetrics"}
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": BATCH_SIZE}
    monitor = "val0_epoch/weighted_sum"
    model_keys = ("r_max", "num_layers", "l_max", "parity", "num_features", "num_bessels", "polynomial_cutoff_p", "radial_mlp_depth", "radial_mlp_width")
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": 0,
            "train_file_path": str(files["train"]),
            "val_file_path": str(files["valid"]),
            "ase_args": {"format": "extxyz"},
            "key_mapping": {"REF_energy": "total_energy", "REF_forces": "forces"},
            "transforms": [
                {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": list(types), "chemical_species_to_atom_type_map": {t: t for t in types}},
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": options["r_max"]},
            ],
            "train_dataloader": {**loader, "shuffle": True},
            "val_dataloader": loader,
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": epochs,
            "check_val_every_n_epoch": 1,
            "num_sanity_val_steps": 0,
            "gradient_clip_val": defaults.clip_grad,
            "logger": False,
            "enable_progress_bar": False,
            "callbacks": [
                {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": monitor, "dirpath": str(work / "checkpoints"), "filename": "best", "save_top_k": 1},
                {"_target_": "trainer_speed.epoch_clock", "path": str(work / "epochs.json")},
            ],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": defaults.ema_decay,
            "loss": loss,
            "val_metrics": val_metrics,
            "optimizer": {"_target_": "torch.optim.AdamW", "lr": defaults.lr, "weight_decay": defaults.weight_decay},
            "lr_scheduler": {
                "scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "factor": defaults.lr_factor, "patience": defaults.lr_patience, "min_lr": defaults.min_lr},
                "monitor": monitor,
                "interval": "epoch",
                "frequency": 1,
            },
            "model": {
                "_target_": "nequip.model.NequIPGNNModel",
                "seed": 0,
                "model_dtype": "float32",
                "type_names": list(types),
                **{key: options[key] for key in model_keys},
                "avg_num_neighbors": statistics_.avg_num_neighbors,
                "per_type_energy_shifts": {chemical_symbols[z]: e for z, e in statistics_.reference_energies.items()},
                "per_type_energy_scales": 1.0,
                "do_derivatives": on_forces,
            },
        },
    }


def epoch_clock(path: str):
    """A Lightning callback that nequip-train's config names: writes the seconds of each epoch
    (training, validation, checkpoint: from one epoch's start to the next) to ``path``."""
    from lightning.pytorch.callbacks import Callback

    class EpochClock(Callback):
        def __init__(self):
            self.starts: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            self.starts.append(time.perf_counter())

        def on_train_end(self, trainer, module):
            stamps = [*self.starts, time.perf_counter()]
            Path(path).write_text(json.dumps([b - a for a, b in itertools.pairwise(stamps)]))

    return EpochClock()


# running and measuring ---------------------------------------------------------------------------
#: runs a command and writes its exit code and ru_maxrss (kB) to a file. Linux carries the
#: high-water mark of the process that execs into the new program's ru_maxrss, so the command must
#: be started from a small process like this one, not from this script once it holds models
LAUNCHER = """
import json, os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as handle:
    json.dump({"exit": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}, handle)
"""


def peak_rss_mb(command: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> float:
    """Run ``command`` (absolute path first; one thread, no GPU) to the end; its peak RSS in MB."""
    report = log.with_suffix(".rusage.json")
    with open(log, "w") as handle:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *command], stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **ONE_THREAD, **(env or {})}, check=True)
    outcome = json.loads(report.read_text())
    if outcome["exit"] != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed (exit {outcome['exit']}); see {log}")
    return outcome["maxrss_kb"] / 1024


def baseline_mb(family: str, backend: str, work: Path) -> float:
    """Peak RSS of a python that imports torch and ``family``'s libraries for ``backend``, nothing else."""
    statement = IMPORTS[family].format(backend=backend, library=LIBRARY[backend])
    return peak_rss_mb([sys.executable, "-c", statement], work / f"import-{family}-{backend}.log")


def run_own(trainer: str, backend: str, mode: str, run_dir: Path, args, options: dict, cwd: Path = ROOT) -> tuple[float, list[float], dict]:
    """ekd, the hand loop or hippynn's loop in a worker subprocess of this script: (peak MB, epoch seconds, setup)."""
    spec = {"trainer": trainer, "backend": backend, "mode": mode, "epochs": args.epochs, "conformations": args.conformations, "options": options, "dir": str(run_dir)}
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    peak = peak_rss_mb([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)], run_dir / "run.log", cwd=cwd)
    config = train_config(mode, args.epochs)
    setup = {"options": options, "train_config": config.model_dump()} if trainer == "ekd" else {"options": options, "optimizer": f"Adam(lr={config.lr})", "loss": "ekd.train.ekd_loss"}
    return peak, json.loads((run_dir / "result.json").read_text())["epoch_seconds"], setup


def run_native(backend: str, mode: str, run_dir: Path, args, files: dict, options: dict, statistics_) -> tuple[float, list[float], dict]:
    """mace_run_train or nequip-train as a user runs it: (peak MB, epoch seconds, setup)."""
    import yaml

    if backend == "hippynn":  # a python script on hippynn's experiment API, as its examples train
        peak, seconds, _ = run_own("hippynn", backend, mode, run_dir, args, options, cwd=run_dir)
        return peak, seconds, {"script": "benchmarks/trainer_speed.py: run_hippynn", "options": options}
    if backend == "mace":
        command = mace_command(run_dir, files, options, statistics_, mode, args.epochs)
        peak = peak_rss_mb(command, run_dir / "run.log", cwd=run_dir)
        return peak, mace_epoch_seconds(run_dir / "run.log"), {"command": command}
    config = nequip_config(run_dir, files, options, statistics_, mode, args.epochs)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [str(BIN / "nequip-train"), "-cp", str(run_dir), "-cn", "config", f"hydra.run.dir={run_dir / 'hydra'}"]
    peak = peak_rss_mb(command, run_dir / "run.log", cwd=run_dir, env={"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")]))})
    return peak, json.loads((run_dir / "epochs.json").read_text()), {"command": command, "config": config}


def loss_note(trainer: str, backend: str, mode: str) -> str:
    """The loss weights and optimiser each trainer used."""
    forces = mode != "energy"
    if trainer == "native" and backend == "mace":
        return "weighted: E 1, F 0.1; AdamW(amsgrad), EMA" if forces else "weighted: E 1, F 0 (forces still computed); AdamW(amsgrad), EMA"
    if trainer == "native" and backend == "hippynn":
        return "MSE of E + 0.1 MSE of F; Adam, no EMA" if forces else "MSE of E; Adam, no EMA"
    if trainer == "native":
        return "E 1, F 0.1 (coeffs normalised to sum 1); AdamW, EMA" if forces else "EnergyOnlyLoss, no force graph; AdamW, EMA"
    optimiser = "AdamW, EMA" if trainer == "ekd" else "Adam, no EMA"
    return f"E 1, F 0.1; {optimiser}" if forces else f"E 1; {optimiser}"


def measure(trainer: str, backend: str, mode: str, args, files: dict, options: dict, statistics_, baseline: float) -> dict:
    run_dir = (args.work / f"{trainer}-{backend}-{mode.replace('+', '-')}").resolve()
    run_dir.mkdir(parents=True)
    if trainer == "native":
        peak, seconds, setup = run_native(backend, mode, run_dir, args, files, options, statistics_)
    else:
        peak, seconds, setup = run_own(trainer, backend, mode, run_dir, args, options)
    steady = seconds[1:] or seconds  # the first epoch builds lazy state
    label = "ekd" if trainer == "ekd" else "hand" if trainer == "hand" else backend
    row = {
        "trainer": NATIVE[backend] if trainer == "native" else "hand loop" if trainer == "hand" else "ekd",
        "backend": backend,
        "mode": mode,
        "batches": BATCHES[label][0],
        "batches_detail": BATCHES[label][1],
        "loss": loss_note(trainer, backend, mode),
        "epoch_seconds": seconds,
        "median_s": statistics.median(steady),
        "min_s": min(steady),
        "max_s": max(steady),
        "peak_rss_mb": peak,
        "import_rss_mb": baseline,
        "above_import_mb": peak - baseline,
        "setup": setup,
    }
    if trainer == "ekd":
        row |= ekd_cache(backend, options, mode, args.conformations, args.epochs)
    print(f"  {row['trainer']:<15} {backend:<7} {mode:<14} {row['median_s']:7.2f} s/epoch  peak {peak:7.0f} MB", flush=True)
    return row


def print_table(rows: list[dict]) -> None:
    header = ("trainer", "backend", "mode", "batches composed how", "s/epoch", "spread (min-max)", "peak RSS MB", "above import MB", "ekd cache MB (build s)", "loss, optimiser")
    lines = [
        (r["trainer"], r["backend"], r["mode"], r["batches"], f"{r['median_s']:.2f}", f"{r['min_s']:.2f}-{r['max_s']:.2f}",
         f"{r['peak_rss_mb']:.0f}", f"{r['above_import_mb']:.0f}", f"{r['cache_mb']:.2f} ({r['cache_build_s']:.2f})" if "cache_mb" in r else "", r["loss"])
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    for line in (header, *lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    print()
    for short, detail in BATCHES.values():
        if any(r["batches"] == short for r in rows):
            print(f"{short}: {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", choices=sorted(NATIVE), default=["mace", "nequip"])  # hippynn: --out results/trainer_speed_hippynn.json
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is left out of the median")
    parser.add_argument("--conformations", type=int, default=None, help="train on N conformations of the training split, chosen at random (default: all 1,280)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "trainer-speed")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "trainer_speed.json")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: one ekd or hand-loop run
    args = parser.parse_args()
    if args.worker is not None:
        run_worker(args.worker)
        return

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    train, validation = benchmark_data(args.conformations)
    files = {"train": (args.work / "train.xyz").resolve(), "valid": (args.work / "valid.xyz").resolve()}
    write_extxyz(train, files["train"])
    write_extxyz(validation, files["valid"])
    print(f"{len(train)} training and {len(validation)} validation conformations, batch {BATCH_SIZE}, float32, 1 thread, {args.epochs} epochs", flush=True)

    rows, baselines = [], {}
    for backend in args.backends:
        options = resolved_options(backend)
        statistics_ = data_statistics(backend, options, train, validation)[1]
        for trainer in args.trainers:
            family = backend if trainer == "native" else "ekd"
            if (family, backend) not in baselines:
                baselines[family, backend] = baseline_mb(family, backend, args.work)
            for mode in args.modes:
                rows.append(measure(trainer, backend, mode, args, files, options, statistics_, baselines[family, backend]))

    print()
    print_table(rows)
    result = {
        "settings": {"epochs": args.epochs, "median_over": "epochs 2..N", "batch_size": BATCH_SIZE, "dtype": "float32", "threads": 1,
                     "train_conformations": len(train), "validation_conformations": len(validation), "force_weight": FORCE_WEIGHT,
                     "cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
        "import_rss_mb": {f"{family}/{backend}": mb for (family, backend), mb in baselines.items()},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
