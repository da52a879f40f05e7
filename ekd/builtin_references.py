"""ekd's built-in reference calculators, registered through the same hook as any plugin:
``pyscf`` (HF, any DFT functional, MP2, CCSD, CCSD(T) at any basis PySCF offers) and ``ase``
(any ASE calculator: EMT, xtb, ORCA, a foundation model, ...; periodic cells too). Units: Å in,
eV, eV/Å and eV/Å³ out.
"""

from __future__ import annotations

import importlib

import numpy as np
import pydantic
from ase import Atoms, units

from ekd.hookspecs import hookimpl
from ekd.reference import ReferenceOptions, ReferenceResult

__all__ = ["AseOptions", "AseReference", "PySCFOptions", "PySCFReference"]

#: how PySCF's method names are written in a level of theory
_DISPLAY = {"hf": "HF", "mp2": "MP2", "ccsd": "CCSD", "ccsd(t)": "CCSD(T)", "wb97x": "wB97X", "b3lyp": "B3LYP", "pbe": "PBE", "pbe0": "PBE0"}
_CORRELATED = ("mp2", "ccsd", "ccsd(t)")


def _basis_name(basis: str) -> str:
    """A basis as chemists write it: Dunning's ``cc-pVDZ``, ``aug-cc-pVTZ``; others upper case."""
    prefix, found, rest = basis.lower().partition("cc-p")
    if found and prefix in ("", "aug-", "jun-", "may-"):
        return f"{prefix}cc-p{rest.upper()}"
    return basis.upper()


class PySCFOptions(ReferenceOptions):
    """A PySCF level of theory. ``method``: ``hf``, ``mp2``, ``ccsd``, ``ccsd(t)``, or any
    exchange-correlation functional PySCF knows (``wb97x``, ``b3lyp``, ...)."""

    method: str = "wb97x"
    basis: str = "6-31g*"
    charge: int = 0
    spin: int = pydantic.Field(0, ge=0, description="2S, unpaired electrons")
    frozen_core: bool = False  # correlated methods: freeze the core orbitals
    conv_tol: float = pydantic.Field(1e-10, gt=0, description="SCF energy convergence, Hartree")
    max_memory_mb: int = pydantic.Field(4000, ge=100)


class PySCFReference:
    """Energies and analytic forces from PySCF (``pip install pyscf``: the ``reference`` extra)."""

    name = "pyscf"
    Options = PySCFOptions

    def __init__(self):
        self._guesses: dict = {}  # the last SCF density per molecule: a good guess for the next

    def level(self, options: PySCFOptions) -> str:
        method = options.method.lower()
        return f"{_DISPLAY.get(method, method.upper())}/{_basis_name(options.basis)}" + ("(fc)" if options.frozen_core and method in _CORRELATED else "")

    def compute(self, numbers: np.ndarray, positions: np.ndarray, options: PySCFOptions, forces: bool) -> ReferenceResult:
        from pyscf import cc, dft, gto, mp, scf
        from pyscf.data import elements

        mol = gto.M(atom=[(int(z), tuple(p)) for z, p in zip(numbers, positions)], basis=options.basis, unit="Angstrom",
                    charge=options.charge, spin=options.spin, verbose=0, max_memory=options.max_memory_mb)
        method = options.method.lower()
        if method == "hf" or method in _CORRELATED:
            mf = scf.RHF(mol) if options.spin == 0 else scf.UHF(mol)
        else:
            mf = dft.RKS(mol) if options.spin == 0 else dft.UKS(mol)
            mf.xc = method
        mf.conv_tol = options.conv_tol
        key = (tuple(int(z) for z in numbers), options.model_dump_json())
        mf.kernel(dm0=self._guesses.get(key))
        if not mf.converged:
            raise RuntimeError(f"SCF did not converge ({self.level(options)})")
        self._guesses[key] = mf.make_rdm1()
        frozen = elements.chemcore(mol) if options.frozen_core else None
        diagnostics = {}
        if method == "mp2":
            solver = mp.MP2(mf, frozen=frozen)
            solver.kernel()
            energy = solver.e_tot
        elif method in ("ccsd", "ccsd(t)"):
            solver = cc.CCSD(mf, frozen=frozen)
            solver.conv_tol, solver.conv_tol_normt = options.conv_tol, 1e-8  # amplitudes tight enough for gradients
            solver.kernel()
            if not solver.converged:
                raise RuntimeError(f"CCSD did not converge ({self.level(options)})")
            diagnostics["t1_diagnostic"] = float(cc.ccsd.get_t1_diagnostic(solver.t1))
            energy = solver.e_tot + (solver.ccsd_t() if method == "ccsd(t)" else 0.0)
        else:
            solver, energy = mf, mf.e_tot
        gradient = None
        if forces:
            if method == "ccsd(t)":  # with the (T) lambda equations, as pyscf.grad.ccsd_t's own example
                from pyscf.cc import ccsd_t_lambda
                from pyscf.grad import ccsd_t

                eris = solver.ao2mo()
                _, l1, l2 = ccsd_t_lambda.kernel(solver, eris, solver.t1, solver.t2, verbose=0)
                gradient = ccsd_t.Gradients(solver).kernel(solver.t1, solver.t2, l1, l2, eris=eris)
            else:
                gradient = solver.nuc_grad_method().kernel()
        return ReferenceResult(
            energy=float(energy) * units.Hartree,
            forces=None if gradient is None else -np.asarray(gradient) * (units.Hartree / units.Bohr),
            diagnostics=diagnostics,
        )


class AseOptions(ReferenceOptions):
    """Any ASE calculator: ``calculator`` is ``module:Class`` (``ase.calculators.emt:EMT``),
    built with ``kwargs``; ``level_of_theory`` names it in the data (default: the class name)."""

    calculator: str
    kwargs: dict = {}
    level_of_theory: str | None = None

    @pydantic.field_validator("calculator")
    @classmethod
    def _importable(cls, value: str) -> str:
        _calculator_class(value)
        return value


def _calculator_class(path: str):
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"'{path}' is not an importable ASE calculator, expected module:Class (e.g. ase.calculators.emt:EMT)") from None


class AseReference:
    """Energies and forces from any ASE calculator, of molecules and of periodic cells (with
    their stress: the calculator must implement it, as EMT does)."""

    name = "ase"
    Options = AseOptions
    periodic = True

    def level(self, options: AseOptions) -> str:
        return options.level_of_theory or options.calculator.partition(":")[2]

    def compute(self, numbers: np.ndarray, positions: np.ndarray, options: AseOptions, forces: bool,
                cell: np.ndarray | None = None, pbc: np.ndarray | None = None) -> ReferenceResult:
        atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc if pbc is not None else False)
        atoms.calc = _calculator_class(options.calculator)(**options.kwargs)
        stress = atoms.get_stress() if forces and atoms.pbc.any() else None
        return ReferenceResult(float(atoms.get_potential_energy()), atoms.get_forces() if forces else None, stress=stress)


@hookimpl
def ekd_register_references(register):
    register(PySCFReference())
    register(AseReference())
