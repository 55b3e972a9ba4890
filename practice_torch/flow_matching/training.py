"""Flow matching's training interface (``practice_torch.models``): ``python -m practice_torch train flow_matching``.

* 2-D sets (moons by default): an MLP field v_theta(t, x) on the raw coordinates (``practice_torch.nets.MLPDenoiser``);
* images (fashion_mnist, ...): the project U-Net on 2x - 1, class-conditional with ``model.conditional=true`` (label
  dropout to the null token, classifier-free guidance ``guidance_scale`` w: (1 + w) v(x, y) - w v(x));
* galaxies: the U-Net conditioned on the 5 normalised physical parameters (``cond_dim=5``, ``cond=y``); ``sample``
  adds the parameter-sweep figure of ``practice_torch.evaluation.galaxies``.

The loss is L_CFM on the conditional OT path (``functions``) with t ~ U[0, 1] and x0 ~ N(0, I) from ``draw_noise``;
``coupling=ot`` re-pairs noise and data by the exact minibatch assignment (OT-CFM). The field sees t as 1000 t (the
sinusoidal embedding's scale of DDPM indices). Samples solve the ODE with torchdiffeq (``method``, ``ode_steps``);
``eval`` reports the held-out CFM loss, the NFE of one solve and, on 2-D data, the exact NLL through
``practice_torch.cnf.log_likelihood``, the exact W2 to held-out points (of the configured solve and of one Euler
step) and the straightness of the trajectories; images get FID/KID from the engine.

Reflow (``model.reflow=true``; Liu, Gong & Liu 2023, "Flow straight and fast", Algorithm 1): the run builds on a
trained flow-matching run, its teacher (``model.teacher``; left empty, the engine trains the teacher's preset first,
with this run's seed, into RUN/teacher). The student starts from the teacher's weights and trains on pairs
(x0, z1 = the teacher's ODE solution from x0), fresh noise each step, so that the 2-rectified flow goes straight from
each noise to the point the teacher carried it to; ``model.distill=true`` trains the one-step map (t = 0 only). Its
``eval`` reports the teacher's figures beside its own.

Consistency distillation (``model.consistency=true``; Song et al. 2023, Algorithm 2; ``consistency``) builds on a
teacher the same way: the consistency model f = c_skip x + c_out F starts from the teacher's network, its target
network (an EMA, ``target_decay``) too, and its own step pulls f at (x_t, t_n) toward the target's f one teacher
Euler step later. It samples in ``consistency_times`` steps (one: (0,)); its ``eval`` puts the teacher's Euler
sampler at 1, 2, 4 and 20 steps beside its one- and two-step samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.engine.runs import Parent, Prerequisite, inherited_keys
from practice_torch.evaluation.metrics import wasserstein2
from practice_torch.flow_matching.consistency import ConsistencyModel, consistency_sample, distillation_loss, update_target
from practice_torch.flow_matching.functions import cfm_loss, ot_coupling, path_sample_and_target, straightness
from practice_torch.flow_matching.model import FlowModel, RectifiedFlow, condition, galaxy_conditions, generate
from practice_torch.flow_matching.sampling import check_solver, integrate
from practice_torch.models import Artefact


@dataclass
class Config:
    """Flow matching's hyperparameters: the run's ``model.*`` keys (``--set model.method=dopri5``)."""

    architecture: Literal["mlp", "unet"] = "mlp"
    hidden: int = 256  # MLP width
    depth: int = 3  # MLP residual blocks
    channels: int = 32  # U-Net base width
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (2,)
    heads: int = 1
    dropout: float = 0.0
    sigma_min: float = 0.0  # width of the conditional path at t = 1 (Lipman et al.); 0: straight lines
    coupling: Literal["independent", "ot"] = "independent"  # ot: exact minibatch OT pairing (OT-CFM)
    conditional: bool = False  # class-conditional on the data set's labels
    cond_dim: int = 0  # conditioned on a float vector y of this size (galaxies: 5 physical parameters)
    label_dropout: float = 0.1  # probability of the null token in training (for classifier-free guidance)
    guidance_scale: float = 0.0  # CFG w: (1 + w) v(x, y) - w v(x); needs conditional
    method: Literal["euler", "midpoint", "rk4", "dopri5"] = "midpoint"  # torchdiffeq's; its rk4 is the 3/8 rule
    ode_steps: int = 50  # uniform steps of the fixed-step methods (NFE = steps x stages)
    atol: float = 1e-5  # dopri5's tolerances (sampling)
    rtol: float = 1e-5
    frames: int = 8  # states shown in the trajectory figures
    density_grid: int = 60  # 2-D: the density figure's lattice (exact trace, rk4 with 20 steps); 0: no density figure
    eval_examples: int = 2000  # held-out examples for the CFM loss (2-D: also samples and points of W2)
    nll_examples: int = 1000  # 2-D: held-out points that get the exact NLL (cnf.log_likelihood, dopri5); 0: none
    straightness_steps: int = 100  # 2-D: midpoint steps of the trajectories whose straightness eval measures
    reflow: bool = False  # the 2-rectified flow: pairs (x0, the teacher's ODE solution from x0) in place of the data
    teacher: str = ""  # reflow, consistency: a trained flow_matching run; "" = the engine trains teacher_preset first
    teacher_preset: str = "quick"  # reflow, consistency: the teacher's preset, trained with this run's seed
    teacher_root: str = ""  # reflow, consistency: where that teacher goes ("" = RUN/teacher; a folder: shared, reused)
    distill: bool = False  # reflow: train the one-step map alone (t = 0: v(x0, 0) fits z1 - x0)
    consistency: bool = False  # consistency distillation of the teacher (Song et al. 2023), its own training step
    consistency_steps: int = 20  # consistency: N, the grid t_n = n / N of the teacher's Euler steps
    target_decay: float = 0.95  # consistency: mu, the EMA of the target network theta- (Song et al.'s CD: 0.95)
    sigma_data: float = 0.5  # consistency: the data's scale in c_skip and c_out (images in [-1, 1]: 0.5)
    consistency_times: tuple[float, ...] = (0.0,)  # consistency sampling: 0 first, then the times noise returns to


GPU_TRAINING = {"ema_decay": 0.9999, "precision": "bf16", "log_every": 100}


# quick (2 CPU cores): moons ~1 min (MLP 128 x 3, 3000 steps of 256); fashion_mnist ~10 min (class-conditional U-Net C =
# 32, 1500 steps of 64, EMA); galaxies: a U-Net conditioned on the 5 parameters. full: GPU scale.
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("nll", "test NLL (ODE likelihood)", "nats/example"), ("fid", "FID (project features)", "FID"))

PRESETS = {
    "quick": {
        **dict.fromkeys(("moons", "*"), Preset(
            Config(hidden=128),
            TrainConfig(steps=3000, batch_size=256, lr=2e-3, warmup_steps=100, ema_decay=0.995, grad_clip=1.0,
                        checkpoint_every=1000, log_every=100, samples=2000, threads=1))),
        "image": Preset(
            Config(architecture="unet", conditional=True, ode_steps=20, guidance_scale=1.0),
            TrainConfig(steps=1500, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.995, grad_clip=1.0,
                        checkpoint_every=250, log_every=50, samples=100, threads=1)),
        # galaxies preset: tuned by the galaxies helper
        # quick: C = 16 without attention (blobs need no global context), 2000 steps of 32 (a few minutes on 2 cores)
        "galaxies": Preset(
            Config(architecture="unet", cond_dim=5, channels=16, attention_levels=(), ode_steps=20),
            TrainConfig(steps=2000, batch_size=32, lr=2e-3, warmup_steps=100, ema_decay=0.995, grad_clip=1.0,
                        checkpoint_every=500, log_every=50, samples=64, threads=1)),
    },
    "full": {
        # compiled under CUDA graphs: the MLP's step is bound by kernel launches (on an H200 4.2 ms against 7.6 eager)
        **dict.fromkeys(("moons", "*"), Preset(
            Config(hidden=256, depth=4),
            TrainConfig(steps=20_000, batch_size=512, lr=1e-3, warmup_steps=500, ema_decay=0.999,
                        checkpoint_every=5000, log_every=500, samples=5000, compile=True,
                        compile_mode="reduce-overhead"))),
        "image": Preset(
            Config(architecture="unet", conditional=True, channels=128, num_res_blocks=2, attention_levels=(1,),
                   dropout=0.1, ode_steps=50, guidance_scale=1.0),
            TrainConfig(steps=200_000, batch_size=128, lr=2e-4, warmup_steps=5000, grad_clip=1.0,
                        checkpoint_every=10_000, samples=100, **GPU_TRAINING)),
        "galaxies": Preset(
            Config(architecture="unet", cond_dim=5, channels=64, num_res_blocks=2, dropout=0.1, ode_steps=50),
            TrainConfig(steps=100_000, batch_size=128, lr=2e-4, warmup_steps=2000, grad_clip=1.0,
                        checkpoint_every=10_000, samples=100, **GPU_TRAINING)),
    },
}
default_config = preset_config("flow_matching", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "hidden", "depth", "channels", "channel_mults", "num_res_blocks", "attention_levels",
                "heads", "conditional", "cond_dim", "reflow", "teacher", "teacher_preset", "teacher_root", "consistency",
                "sigma_data")
USE = ("guidance_scale", "method", "ode_steps", "atol", "rtol", "frames", "density_grid", "eval_examples",
       "nll_examples", "straightness_steps", "consistency_times")  # what sample and eval --set may change
BUILDS_ON = {"teacher": "flow_matching"}  # reflow, consistency: the flow whose ODE they distil (engine.runs.Parent)
NETWORK = ("architecture", "hidden", "depth", "channels", "channel_mults", "num_res_blocks", "attention_levels",
           "heads", "conditional", "cond_dim")  # what a reflow or consistency run takes from its teacher
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("hidden", "depth", "channels", "channel_mults", "num_res_blocks", "heads", "ode_steps", "atol",
                           "rtol", "frames", "eval_examples", "straightness_steps", "consistency_steps",
                           "sigma_data"), "positive"),
          "target_decay": "in [0, 1)", "consistency_times": "in [0, 1)",
          **dict.fromkeys(("attention_levels", "cond_dim", "guidance_scale", "density_grid", "nll_examples"), "at least 0"),
          **dict.fromkeys(("dropout", "sigma_min", "label_dropout"), "in [0, 1)")}




def prerequisite_runs(config: Config, data) -> dict[str, Prerequisite]:
    """The teacher of reflow or consistency distillation when ``model.teacher`` is empty: the flow_matching preset
    ``model.teacher_preset`` on this data set, trained with this run's seed, inside this run's folder (RUN/teacher)
    or, when ``model.teacher_root`` names a folder, there (reused once finished)."""
    if not (config.reflow or config.consistency) or config.teacher:
        return {}

    def edit(base):
        return replace(base, model=replace(base.model, reflow=False, distill=False, consistency=False, teacher=""))

    return {"teacher": Prerequisite("flow_matching", config.teacher_preset, edit, config.teacher_root, same_seed=True)}


def inherit(config: Config, parents: dict[str, Parent]) -> Config:
    """A reflow or consistency run's config with its teacher's network (``NETWORK``): what the engine records before
    the first build (``practice_torch.models.inherited``)."""
    return inherited_keys(config, parents.get("teacher"), NETWORK)


def build(config: Config, data, parents: dict[str, Parent] | None = None) -> FlowModel:
    """The field (``build_field``); for reflow, the student and its frozen teacher (``RectifiedFlow``); for
    consistency distillation, the network, its target and the frozen teacher (``ConsistencyModel``). All are the
    teacher run's network and start from its weights (copied at the first build, from this run's checkpoint
    afterwards). One-line ValueError for settings they do not take, or a teacher that is not a field."""
    if config.distill and not config.reflow:
        raise ValueError("model.distill=true trains the one-step map of a reflow run: add model.reflow=true")
    if config.reflow and config.consistency:
        raise ValueError("model.reflow and model.consistency are two ways to distil a teacher: choose one")
    times = config.consistency_times
    if not times or times[0] != 0 or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"model.consistency_times must start at 0 (the noise) and rise, e.g. 0 or 0,0.5; got "
                         f"{','.join(map(str, times))}")
    student = build_field(config, data)
    if not (config.reflow or config.consistency):
        return student
    mode = "reflow" if config.reflow else "consistency"
    if config.coupling != "independent" or config.sigma_min:
        raise ValueError(f"model.{mode}=true trains on straight paths from the teacher's noise: leave "
                         "model.coupling=independent and model.sigma_min=0")
    parent = (parents or {}).get("teacher")
    if parent is None:
        raise ValueError(f"{mode} builds on a trained flow_matching run: --set model.teacher=RUN_DIR, or leave it "
                         "empty and train through practice_torch.models, which trains one first")
    if parent.config is not None and parent.config.data.name != data.name:
        raise ValueError(f"model.teacher={parent.run} was trained on {parent.config.data.name}; this run is on "
                         f"{data.name}")
    if parent.config is not None and parent.config.model.consistency:
        raise ValueError(f"model.teacher={parent.run} is a consistency model, which has no ODE field to distil; "
                         "name a flow-matching or reflow run")
    teacher, target = build_field(config, data), build_field(config, data)
    if parent.net is not None:  # the first build: all start as the teacher's field
        for net in (teacher, student, target):
            net.net.load_state_dict(parent.net.net.state_dict())
    return ConsistencyModel(student, target, teacher) if config.consistency else RectifiedFlow(student, teacher)


def build_field(config: Config, data) -> FlowModel:
    """The MLP field for vectors (D,), the U-Net field for (C, H, W) images; one-line ValueError otherwise."""
    check_solver(config.method, config.ode_steps)
    if data.modality not in ("1-D", "2-D", "image", "audio"):
        raise ValueError(f"flow matching models real vectors or images; {data.name} is {data.modality} data")
    if config.conditional and not data.num_classes:
        raise ValueError(f"model.conditional=true needs labels, and {data.name} has none")
    if config.guidance_scale and not config.conditional:
        raise ValueError("model.guidance_scale needs a class-conditional model (model.conditional=true)")
    if config.conditional and config.cond_dim:
        raise ValueError("choose one conditioning: model.conditional=true (labels) or model.cond_dim > 0 (vectors)")
    if config.coupling not in ("independent", "ot"):
        raise ValueError(f"model.coupling must be 'independent' or 'ot', got {config.coupling!r}")
    if config.coupling == "ot" and config.cond_dim:
        raise ValueError("model.coupling=ot re-pairs noise and data, which breaks conditioning on a vector (cond_dim)")
    if not 0 <= config.sigma_min < 1:
        raise ValueError(f"model.sigma_min must be in [0, 1), got {config.sigma_min}")
    k = data.num_classes if config.conditional else 0
    if config.architecture == "unet":
        if len(data.shape) != 3:
            raise ValueError(f"the U-Net field models (C, H, W) images; {data.name} examples have shape {data.shape} "
                             "(use model.architecture=mlp)")
        from practice_torch.nets import UNet, UNetConfig

        extra = {"cond_dim": config.cond_dim} if config.cond_dim else {}
        net = UNet(UNetConfig(in_channels=data.shape[0], out_channels=data.shape[0], channels=config.channels,
                              channel_mults=config.channel_mults, num_res_blocks=config.num_res_blocks,
                              attention_levels=config.attention_levels, heads=config.heads, dropout=config.dropout,
                              num_classes=k, **extra))
    elif config.architecture == "mlp":
        if len(data.shape) != 1 or config.cond_dim:
            raise ValueError(f"the MLP field models unconditional or class-conditional vectors (D,); {data.name} "
                             f"examples have shape {data.shape} (use model.architecture=unet)")
        from practice_torch.nets import MLPDenoiser

        net = MLPDenoiser(data.shape[0], config.hidden, config.depth, k)
    else:
        raise ValueError(f"model.architecture must be 'mlp' or 'unet', got {config.architecture!r}")
    return FlowModel(net, data.shape, k, config.cond_dim, data.unit_images)


def draw_noise(net: FlowModel, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """t ~ U[0, 1] (n,), x0 ~ N(0, I) (n, *shape), drop (n,) bool (labels that become the null token) and, for
    consistency distillation, n (n,) the grid index of each example's time."""
    noise = {"t": torch.rand(n, generator=generator), "x0": torch.randn((n, *net.shape), generator=generator)}
    if net.num_classes:
        noise["drop"] = torch.rand(n, generator=generator) < config.label_dropout
    if config.consistency:
        noise["n"] = torch.randint(0, config.consistency_steps, (n,), generator=generator)
    return noise




def couple(x0: torch.Tensor, x1: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """OT-CFM's re-pairing of the noise x0 to the data x1 (B, ...): within each class when y (B,) labels are given,
    so the noise of every class stays N(0, I) distributed."""
    if y is None:
        return ot_coupling(x0, x1)
    out = torch.empty_like(x0)
    for label in torch.unique(y):
        rows = (y == label).nonzero().squeeze(1)
        out[rows] = ot_coupling(x0[rows], x1[rows])
    return out


@torch.no_grad()
def teacher_ends(net: RectifiedFlow, config: Config, x0: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """z1 (B, ...): the teacher's ODE solution from the noise x0 (B, ...) by ``config.method`` and ``ode_steps``
    (CFG with ``guidance_scale``), so that (x0, z1) is a pair of the coupling reflow rectifies (Liu et al. 2023,
    Algorithm 1: Z^{k+1} = RectFlow((Z0^k, Z1^k)))."""
    field = net.teacher.field(condition(net, y), config.guidance_scale)
    return integrate(field, x0, config.method, config.ode_steps, config.atol, config.rtol).x[-1]


def loss(net: FlowModel, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """L_CFM = E ||v_theta(t, x_t) - (x1 - (1 - sigma_min) x0)||^2 per dimension (Lipman et al. eq. 9, 22-23),
    x_t = (1 - (1 - sigma_min) t) x0 + t x1 (``config.sigma_min``, ``config.coupling``); for reflow x1 is the
    teacher's end z1 of the noise x0 (``teacher_ends``; Liu et al. 2023, eq. 1 on the pairs (Z0, Z1)).
    batch: (x (B, ...), y); noise: ``draw_noise`` rows."""
    x1 = net.to_model(batch[0])
    x0, t = noise["x0"].to(x1.device), noise["t"].to(x1.device)
    y = batch[1] if len(batch) > 1 else None
    if config.reflow:
        x1 = teacher_ends(net, config, x0, y)  # the pair (x0, z1) of the teacher's coupling; the data give y alone
        if config.distill:
            t = torch.zeros_like(t)  # the one-step map: v(x0, 0) regressed on z1 - x0
    elif config.coupling == "ot":
        x0 = couple(x0, x1, y if net.num_classes else None)
    x_t, u = path_sample_and_target(x1, x0, t, config.sigma_min)
    return cfm_loss(net(x_t, t, condition(net, y, noise.get("drop"))), u), {}


def own_step(config: Config) -> bool:
    """Consistency distillation trains by its own step (``train_step``: the EMA of its target after the update)."""
    return config.consistency


def players(net: ConsistencyModel, config: Config) -> dict[str, Player]:
    """Consistency distillation's one optimizer: F_theta's parameters (the target's and the teacher's are frozen)."""
    return {"consistency": Player(list(net.net.parameters()))}


def train_step(net: ConsistencyModel, config: Config, step: int, run):
    """Consistency distillation (Song et al. 2023, Algorithm 2): the loss of ``consistency.distillation_loss`` on a
    batch and its noise, one update of theta, then theta- <- mu theta- + (1 - mu) theta."""
    (x, *rest), noise = run.next_batch()
    x1 = net.to_model(x)
    with run.autocast():
        loss = distillation_loss(net, config, x1, rest[0] if rest else None, noise)
    run.update(consistency=loss)
    update_target(net, config.target_decay)
    return loss.detach(), {}


# Sampling --------------------------------------------------------------------------------------------------
def draw(net: FlowModel, config: Config, n: int, generator: torch.Generator, y: torch.Tensor | None = None,
         frames: int = 0, noise: torch.Tensor | None = None):
    """n samples in model space as a ``sampling.Trajectory``: the ODE (``model.generate``), or for a consistency
    model its ``consistency_times`` steps (``consistency.consistency_sample``)."""
    if not isinstance(net, ConsistencyModel):
        return generate(net, config, n, generator, y, frames, noise)
    x0 = (torch.randn((n, *net.shape), generator=generator) if noise is None else noise).to(_device(net))
    return consistency_sample(net, x0, y, config.consistency_times, config.sigma_data, generator)
def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device




@torch.no_grad()
def sample(net: FlowModel, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Images: n samples (class-conditional: one row per class; galaxies: at the held-out ``examples``' parameters
    or parameters drawn like the data's), the ODE trajectories of 8 of them, and on galaxies the parameter sweep.
    2-D: samples beside the held-out points, trajectories and the learned field."""
    device, y, per_row = _device(net), None, math.ceil(math.sqrt(n))
    if net.num_classes:
        per_row = math.ceil(n / net.num_classes)
        y = torch.arange(net.num_classes, device=device).repeat_interleave(per_row)
    elif net.cond_dim:
        y = (examples[1][:n].float() if examples is not None and len(examples[1]) >= n
             else galaxy_conditions(n, generator)).to(device)
    if len(net.shape) == 1:
        from practice_torch.flow_matching.figures import vector_figures

        trajectory = draw(net, config, n, generator, y, frames=max(config.frames, 2))
        field = not isinstance(net, ConsistencyModel)  # a consistency model has no field: its samples and steps
        return vector_figures(net, trajectory, None if examples is None else examples[0], config.density_grid, field)
    trajectory = draw(net, config, n if y is None else len(y), generator, y, frames=max(config.frames, 2))
    chain = trajectory.x[:, :8].transpose(0, 1).reshape(-1, *net.shape)  # 8 rows of frames
    artefacts = [Artefact("samples", "images", net.from_model(trajectory.x[-1]).clamp(0, 1).cpu(), nrow=per_row),
                 Artefact("trajectories", "images", net.from_model(chain).clamp(0, 1).cpu(),
                          nrow=len(trajectory.times))]
    if net.cond_dim:
        artefacts += galaxy_sweep(net, config, generator)
    return artefacts


def galaxy_sweep(net: FlowModel, config: Config, generator: torch.Generator) -> list[Artefact]:
    """The galaxies helper's figure of samples along a sweep of each parameter (skipped, with a message, if absent)."""
    try:
        from practice_torch.evaluation.galaxies import sweep_figure
    except ImportError as exc:
        print(f"galaxy sweep figure skipped: practice_torch.evaluation.galaxies is not available ({exc})")
        return []

    def conditioned(y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return draw(net, config, len(y), generator, y.to(_device(net)), noise=noise).x[-1].cpu()

    return [sweep_figure(conditioned, generator=generator)]


# Evaluation --------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(net: FlowModel, config: Config, dataset: Dataset, generator: torch.Generator,
             samples: int | None = None) -> dict[str, float]:
    """The held-out CFM loss (independent coupling, one t and x0 per example, on ``eval_examples``), the NFE of one
    ODE solve; on 2-D data the exact W2 of eval_examples/2 samples to as many held-out points (beside the W2 between
    two halves of the held-out points: the floor) and the exact NLL in nats of ``nll_examples`` held-out points
    (``practice_torch.cnf.log_likelihood``: dopri5, exact trace), and the straightness and one-step W2 (beside the
    teacher's for reflow). A consistency model has no field: ``evaluate_consistency`` (which draws ``samples``
    images of its own: eval's ``--samples``). Images get FID/KID from eval's sample metrics."""
    if isinstance(net, ConsistencyModel):
        return evaluate_consistency(net, config, dataset, generator, samples)
    device = _device(net)
    m = min(len(dataset), config.eval_examples)
    total, points, labels = 0.0, [], []
    independent = replace(config, coupling="independent")  # the held-out loss pairs at random
    for batch in DataLoader(Subset(dataset, range(m)), batch_size=500):
        x, y = batch[0].to(device), batch[1].to(device)
        noise = {k: v.to(device) for k, v in draw_noise(net, config, len(x), generator).items()}
        noise.pop("drop", None)  # the conditional loss: no label dropout
        total += loss(net, independent, (x, y), noise, 0)[0].item() * len(x)
        points.append(x.cpu())
        labels.append(y.cpu())
    metrics: dict[str, float] = {"cfm_loss": total / m, "examples": m}
    probe = draw(net, config, 16, generator, (labels[0][:16].to(device) if net.num_classes or net.cond_dim
                                                  else None))
    metrics |= {"nfe_per_solve": probe.nfe, "method": config.method, "ode_steps": config.ode_steps}
    if len(net.shape) != 1:
        return metrics
    held = torch.cat(points)
    half = len(held) // 2
    samples = draw(net, config, half, generator).x[-1].cpu()
    metrics |= {"w2": wasserstein2(samples, held[:half]), "w2_held_out_halves": wasserstein2(held[half:2 * half],
                                                                                           held[:half]),
                "w2_samples": half}
    if config.nll_examples:
        nll, nfe = negative_log_likelihood(net, held[: config.nll_examples].to(device))
        metrics |= {"nll": nll.mean().item(), "nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
                    "nll_examples": len(nll), "nfe_likelihood": nfe}
    x0 = torch.randn((half, *net.shape), generator=generator).to(device)
    metrics |= straight_figures(net, config, x0, held[:half].to(device))
    if isinstance(net, RectifiedFlow):  # the teacher's figures from the same noise
        metrics |= {f"teacher_{k}": v for k, v in straight_figures(net.teacher, config, x0, held[:half].to(device)).items()}
    return metrics


TEACHER_EULER_STEPS = (1, 2, 4, 20)  # the teacher's Euler sampler beside a consistency model (Song et al., Table 1)
CONSISTENCY_STEPS = (("one_step", (0.0,)), ("two_step", (0.0, 0.5)))  # its own sampler in one step and in two


@torch.no_grad()
def evaluate_consistency(net: ConsistencyModel, config: Config, dataset: Dataset, generator: torch.Generator,
                         samples: int | None = None) -> dict[str, float]:
    """The NFE of ``consistency_times``; on 2-D data the W2 to eval_examples/2 held-out points of the consistency
    model's samples in ``consistency_times``, in one step (0) and in two (0 and 0.5), beside the teacher's Euler
    sampler at ``TEACHER_EULER_STEPS`` steps from the same noise and the W2 between two halves of the held-out
    points (the floor). On images the same samplers' FIDs (``consistency_fids``) of ``samples`` images (default
    ``eval_examples``); eval's sample metrics add FID/KID of ``consistency_times``."""
    device = _device(net)
    metrics: dict[str, float] = {"nfe_per_solve": len(config.consistency_times)}
    if len(net.shape) != 1:
        return metrics | consistency_fids(net, config, dataset, generator, samples or config.eval_examples)
    held = torch.cat([x for x, *_ in DataLoader(Subset(dataset, range(min(len(dataset), config.eval_examples))),
                                                 batch_size=500)])
    half = len(held) // 2
    x0 = torch.randn((half, *net.shape), generator=generator).to(device)

    def w2(samples: torch.Tensor) -> float:
        return wasserstein2(samples.cpu(), held[:half])

    metrics |= {"w2": w2(draw(net, config, half, generator, noise=x0).x[-1]), "w2_samples": half,
                "w2_held_out_halves": wasserstein2(held[half:2 * half], held[:half])}
    for k, times in CONSISTENCY_STEPS:
        metrics[f"w2_{k}"] = w2(consistency_sample(net, x0, None, times, config.sigma_data, generator).x[-1])
    for steps in TEACHER_EULER_STEPS:
        metrics[f"teacher_w2_euler_{steps}"] = w2(integrate(net.teacher.field(), x0, "euler", steps).x[-1])
    return metrics


FID_CHUNK = 500  # images drawn at a time by ``consistency_fids``


@torch.no_grad()
def consistency_fids(net: ConsistencyModel, config: Config, dataset: Dataset, generator: torch.Generator, n: int
                     ) -> dict[str, float]:
    """FID (the project's features) against n held-out images of the samplers of ``evaluate_consistency``, each
    drawing n images from the same noise x0 (n, C, H, W) and the same classes (in turn, as ``sample`` draws them):
    ``fid_one_step`` and ``fid_two_step`` (the consistency model, Song et al. 2023, Algorithm 1) beside
    ``teacher_fid_euler_K`` (the teacher's ODE in K Euler steps, with its guidance), and ``sampler_fid_samples``,
    n. {} and one line on stderr for a data set without a feature network."""
    import sys

    from practice_torch.data import stacked
    from practice_torch.evaluation.features import FeatureNetworkError, check_dataset, embed, feature_network
    from practice_torch.evaluation.metrics import fid_from_features

    name = dataset.run_data.name
    try:
        check_dataset(name)
    except FeatureNetworkError as exc:
        print(f"consistency FIDs skipped: {exc}", file=sys.stderr)
        return {}
    device, n = _device(net), min(n, len(dataset))
    features = feature_network(name, device=device).eval()
    real, conditions = stacked(dataset, n)[:2]
    real_feats, _ = embed(features, real.clamp(0, 1), desc="features (held out)")
    noise = torch.randn((n, *net.shape), generator=generator).split(FID_CHUNK)
    y = torch.arange(n) % net.num_classes if net.num_classes else conditions.float() if net.cond_dim else None
    labels = y.split(FID_CHUNK) if y is not None else (None,) * len(noise)

    def consistency(times):
        return lambda x0, y: consistency_sample(net, x0, y, times, config.sigma_data, generator).x[-1]

    def euler(steps):
        return lambda x0, y: integrate(net.teacher.field(condition(net, y), config.guidance_scale), x0, "euler",
                                       steps).x[-1]

    samplers = {**{f"fid_{k}": consistency(times) for k, times in CONSISTENCY_STEPS},
                **{f"teacher_fid_euler_{steps}": euler(steps) for steps in TEACHER_EULER_STEPS}}
    metrics: dict[str, float] = {"sampler_fid_samples": n}
    for key, draw_with in samplers.items():
        images = torch.cat([net.from_model(draw_with(x0.to(device), None if c is None else c.to(device))).cpu()
                            for x0, c in zip(noise, labels)])
        fake_feats, _ = embed(features, images, desc=f"features ({key})")
        metrics[key] = fid_from_features(real_feats, fake_feats)
    return metrics


@torch.no_grad()
def straight_figures(net: FlowModel, config: Config, x0: torch.Tensor, held: torch.Tensor) -> dict[str, float]:
    """How straight the unconditional field's trajectories from the noise x0 (N, D) are: their straightness (Liu et
    al. 2023, Definition 3.1; midpoint rule, ``config.straightness_steps``, the field at each step's start), the W2 of
    one Euler step's samples x0 + v(x0, 0) to the held-out points (N, D)."""
    field, k = net.field(), config.straightness_steps
    path = integrate(field, x0, "midpoint", k, frames=k + 1)
    velocities = torch.stack([field(t, x) for t, x in zip(path.times[:-1], path.x[:-1])])
    one_step = x0 + field(torch.zeros((), device=x0.device), x0)
    return {"straightness": straightness(x0, path.x[-1], velocities).item(),
            "w2_one_step": wasserstein2(one_step.cpu(), held.cpu())}


def negative_log_likelihood(net: FlowModel, x: torch.Tensor, method: str = "dopri5", steps: int | None = None,
                            chunk: int = 500) -> tuple[torch.Tensor, int]:
    """(-log p_1(x) in nats per example (B,), the field evaluations of the largest chunk's solve) by the
    instantaneous change of variables through the learned field (``practice_torch.cnf.log_likelihood``, exact
    trace; dopri5 at atol = rtol = 1e-5 unless ``method``/``steps``)."""
    from practice_torch.cnf import log_likelihood

    calls = 0

    def field(t, z):
        nonlocal calls
        calls += 1
        return net(z, t)

    parts, nfe = [], 0
    for part in x.split(chunk):
        calls = 0
        parts.append(-log_likelihood(field, part, method=method, steps=steps).detach().cpu())
        nfe = max(nfe, calls)
    return torch.cat(parts), nfe
