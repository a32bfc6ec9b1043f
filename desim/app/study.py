"""Studies: credit allocation and nonstationarity switches, measured (``desim study``).

``desim study credit SCENARIO`` trains each reward-allocation method (global,
difference, value decomposition, shaped) with the chosen learners over N
seeds; ``desim study nonstationarity SCENARIO`` trains a learner with each
nonstationarity switch off and on. Every (arm, seed) is an ordinary ``train``
run of the store, and then measured the same way:

- **stability**: the held-out return (the floor's own team reward, whatever
  the arm learned from) at every checkpoint; the final return is the mean of
  the checkpoints in the last fifth of training; its variance across seeds,
  and whether the seed *converged* (:func:`converged`);
- **traceability**: the final policy plays ``episodes`` episodes on batched
  floors; each robot's true contribution is re-simulated with that robot on
  NOOP (:mod:`desim.models.warehouse.contribution`); the credit the arm assigns
  to each robot over the same episodes (:func:`assigned_credit`) is correlated
  with it, within episodes (headline) and pooled;
- **complexity**: training wall seconds per 10,000 env steps (rollouts, the
  counterfactual floors and updates), the learner's parameters, and the lines
  of configuration the method needs;
- **performance**: the final policy as the robots' brain, deliveries per hour
  in the tick tempo and in the event tempo with network latency; the
  production gap is ``event / tick - 1``.

Tasks run on a local process pool (``workers``); each carries its own seed, so
where or in which order it runs changes nothing in its figures (timings
aside). The coordinator writes the study's tables
(:mod:`desim.app.study_tables`).
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from desim.app import study_tables as T
from desim.app.runner import prepare, run
from desim.app.scenario import load_data, read_text
from desim.app import pipeline_study as PC
from desim.app.sweep_backends import LocalPool
from desim.models.warehouse.contribution import counterfactual_returns, record_episodes, traceability
from desim.models.warehouse.vector_env import BatchedWarehouseEnv
from desim.policies.checkpoint import decide, load_learner
from desim.policies.train import train
from desim.policies.value_decomposition import with_ids
from desim.scenario import ScenarioError, validate
from desim.store import DEFAULT_STORE, Store

STUDIES = ("credit", "nonstationarity")
PPO_ALGOS = ("mappo", "ippo")  # the learners the three reward allocations train (batched floors)
VD_ALGOS = ("vdn", "qmix")  # value decomposition: the mixer is the allocation (simulated floors)
METHODS = ("global", "difference", "value decomposition", "shaped")
# the commonly quoted table the credit study puts numbers beside: complexity / stability / traceability
RATINGS = {"global": ("low", "high", "minimal"), "difference": ("high", "moderate", "high"),
           "value decomposition": ("moderate", "high", "moderate"), "shaped": ("very high", "low", "very high")}
VD_UPDATE_EVERY = 256  # env steps between VDN/QMIX updates on many floors (their default, 32, suits 8 copies)
SHAPING = 0.5  # the shaped arm's weight when the scenario sets none
CONVERGE_FRAC = 0.5  # a seed converges at CONVERGE_FRAC of the study's best held-out return ...
PLATEAU = 0.25  # ... with its last two evaluations within 25% of their mean
FINAL_FRAC = 0.2  # the final return: the checkpoints in the last fifth of training
EVALUATIONS = 10  # held-out evaluations (checkpoints) per training run
EVAL_EPISODES = 8  # held-out episodes per evaluation
# the network the event-tempo deployment adds when the scenario has none (warehouse-tiny-event.toml's wireless)
EVENT_NETWORK = {
    "topology": {"kind": "warehouse"},
    "links": {"default": {"delay": {"dist": "lognormal", "mean": 0.002, "jitter": 0.0005}, "bandwidth": 1e9},
              "wireless": {"delay": {"dist": "lognormal", "mean": 0.020, "jitter": 0.015, "correlation": 0.3},
                           "loss": {"model": "gilbert_elliott", "p": 0.01, "r": 0.3}, "bandwidth": 54e6}},
}
EVENT_DURATIONS = {"move": 1.0, "move_loaded": 1.4, "turn": 0.6, "load": 2.0, "noop": 0.5, "jitter": 0.1}


# -- arms ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One way to train: ``train`` / ``learner`` override ``[train]`` / ``[train.<algo>]``; ``deploy``
    overrides the event-tempo deployment scenario. ``control`` names the arm this one is compared with
    (the nonstationarity study); ``trained_as`` names an arm whose training this one reuses (a switch that
    only acts at deployment). ``config`` is what a user writes to choose it."""

    name: str
    method: str
    algo: str
    train: dict = field(default_factory=dict)
    learner: dict = field(default_factory=dict)
    deploy: dict = field(default_factory=dict)
    switch: str = ""
    setting: str = ""
    control: str = ""
    trained_as: str = ""
    config: tuple[str, ...] = ()
    credit: str = ""  # what the arm assigns each robot: global, difference, shaped, individual, utility


def credit_arms(algos: Iterable[str], shaping: float) -> list[Arm]:
    """The credit study's arms: global, difference and shaped rewards for each PPO learner in ``algos``
    (batched floors), value decomposition for each of VDN/QMIX in ``algos`` (batched floors, a host loop)."""
    arms = []
    algos = list(algos)
    for a in algos:
        if a in PPO_ALGOS:
            sfx = "" if len(algos) == 1 else f" ({a})"
            arms += [
                Arm(f"global{sfx}", "global", a, {"floors": "batched", "credit": "global", "shaping": 0.0},
                    config=('floors = "batched"', 'credit = "global"'), credit="global"),
                Arm(f"difference{sfx}", "difference", a, {"floors": "batched", "credit": "difference", "shaping": 0.0},
                    config=('floors = "batched"', 'credit = "difference"'), credit="difference"),
                Arm(f"shaped{sfx}", "shaped", a, {"floors": "batched", "credit": "shaped", "shaping": shaping,
                                                  "shaping_potential": "carrying"},
                    config=('credit = "shaped"', f"shaping = {shaping:g}", 'shaping_potential = "carrying"'),
                    credit="shaped"),
            ]
        elif a in VD_ALGOS:
            arms.append(Arm(a, "value decomposition", a, {"floors": "batched", "credit": "individual", "shaping": 0.0},
                            {"update_every": VD_UPDATE_EVERY}, config=(f"--algo {a}",), credit="utility"))
        else:
            raise ValueError(f"unknown algo {a!r} for the credit study (expected {', '.join(PPO_ALGOS + VD_ALGOS)})")
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(arms, key=lambda x: (order[x.method], algos.index(x.algo)))


def nonstationarity_arms(algo: str, lag: float, staleness: int) -> list[Arm]:
    """The nonstationarity study's arms on simulated floors: the baseline (every switch off), each switch
    on; the staleness filter is compared with lagging adoption alone (it only drops data when some agent
    runs an old version), the jitter buffer with the baseline's policy (it acts at deployment only)."""
    if algo not in PPO_ALGOS + ("vdn", "qmix", "coma"):
        raise ValueError(f"unknown algo {algo!r} for the nonstationarity study")
    base = {"floors": "simulated", "credit": "individual"}
    return [
        Arm("baseline", "individual", algo, base, deploy={"jitter_buffer": {"enabled": False}},
            config=(), credit="individual", setting="off"),
        Arm("reward_norm", "individual", algo, base, {"reward_norm": True}, {"jitter_buffer": {"enabled": False}},
            "reward normalisation", "on", "baseline", config=("reward_norm = true",), credit="individual"),
        Arm("role_rotation", "individual", algo, base, {"role_rotation": True}, {"jitter_buffer": {"enabled": False}},
            "role rotation", "on", "baseline", config=("role_rotation = true",), credit="individual"),
        Arm("adoption_lag", "individual", algo, base, {"adoption_lag": lag}, {"jitter_buffer": {"enabled": False}},
            "asynchronous adoption", "on", "baseline", config=(f"adoption_lag = {lag:g}",), credit="individual"),
        Arm("staleness", "individual", algo, base, {"adoption_lag": lag, "max_staleness": staleness},
            {"jitter_buffer": {"enabled": False}}, "staleness filter", "on", "adoption_lag",
            config=(f"max_staleness = {staleness}",), credit="individual"),
        Arm("jitter_buffer", "individual", algo, base, deploy={"jitter_buffer": {"enabled": True}},
            switch="jitter buffer", setting="on", control="baseline", trained_as="baseline",
            config=("[jitter_buffer] enabled = true",), credit="individual"),
    ]


# -- the criterion -------------------------------------------------------------------------------
def final_return(curve: list[tuple[int, float]], steps: int) -> float:
    """Mean held-out return of the checkpoints in the last ``FINAL_FRAC`` of training (at least the last)."""
    if not curve:
        return math.nan
    late = [r for s, r in curve if s >= (1 - FINAL_FRAC) * steps] or [curve[-1][1]]
    return float(np.mean(late))


def converged(curve: list[tuple[int, float]], target: float) -> tuple[bool, float]:
    """``(converged, steps_to_converge)`` for one seed's held-out curve ``[(step, return), ...]``.

    Converged: the last two evaluations both reach ``target`` (``CONVERGE_FRAC`` of the best held-out
    return any run of the study reached, unless given) and differ by at most ``PLATEAU`` of their mean
    (a plateau, not a curve still rising through the target). Steps to converge: the first checkpoint
    from which every later evaluation reaches the target (nan unless converged)."""
    if not curve or not math.isfinite(target) or target <= 0:
        return False, math.nan
    rets = [r for _, r in curve]
    first = math.nan
    for i in range(len(curve)):
        if all(r >= target for r in rets[i:]):
            first = float(curve[i][0])
            break
    last = rets[-2:] if len(rets) >= 2 else rets
    plateau = len(last) == 2 and abs(last[0] - last[1]) <= PLATEAU * max(np.mean(last), 1e-9)
    ok = bool(all(r >= target for r in last) and plateau)
    return ok, first if ok else math.nan


# -- one (arm, seed) -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    arm: Arm
    seed: int
    steps: int
    data: dict  # the scenario's data
    file: str
    base_dir: str
    store: str
    out_dir: str
    envs: int
    episodes: int
    until: float
    event: dict  # the event-tempo scenario's data
    evaluations: int = EVALUATIONS
    eval_episodes: int = EVAL_EPISODES


def train_task(task: Task) -> dict:
    """Train one arm with one seed; return its curve and summary (the store gets the ``train`` run)."""

    arm = task.arm
    # the study measures the learner itself, not the gate; EVALUATIONS held-out evaluations per run
    tcfg = {**arm.train, "rollback": False, "checkpoint_every": max(1, task.steps // task.evaluations),
            "eval_episodes": task.eval_episodes}
    if tcfg.get("floors") == "batched":
        tcfg["n_envs"] = task.envs
    sc = validate(task.data, task.file, Path(task.base_dir))
    res = train(sc, arm.algo, task.steps, device="cpu", seed=task.seed,
                out_dir=Path(task.out_dir) / f"{_slug(arm.name)}-s{task.seed}", store_path=task.store,
                progress=False, cfg=dict(arm.learner), train_cfg=tcfg, file=task.file)
    curve = [(int(p["step"]), float(p["candidate_return"])) for p in res["promotions"]]
    return {"arm": arm.name, "seed": task.seed, "train_run": res["run_id"], "steps": int(res["steps"]),
            "wall_s": float(res["wall_s"]), "curve": curve, "checkpoint": res["checkpoints"][-1]}


def measure_task(task: Task, trained: dict) -> dict:
    """Traceability, complexity and deployment figures of one trained arm and seed."""

    arm = task.arm
    learner, ckpt = load_learner(trained["checkpoint"], "cpu")
    params = sum(int(p.numel()) for p in _parameters(learner))
    tr = traceability_of(learner, ckpt, arm.credit, task.data, task.episodes, task.seed,
                         shaping=float(arm.train.get("shaping", 0.0)),
                         shaping_potential=arm.train.get("shaping_potential", "carrying"))
    tick = deploy(task.data, task.file, task.base_dir, trained["checkpoint"], task.seed, task.until, {})
    event = deploy(task.event, task.file, task.base_dir, trained["checkpoint"], task.seed, task.until, arm.deploy)
    gap = _gap(event, tick)
    return {"params": params, "config_lines": len(arm.config), "dph_tick": tick, "dph_event": event,
            "production_gap": gap, "traceability": tr["within"], "traceability_pooled": tr["pooled"],
            "credit_rows": tr["rows"],
            "train_s_per_10k": trained["wall_s"] / max(trained["steps"], 1) * 1e4}


def run_task(task: Task) -> dict:
    """One (arm, seed): train, then measure (a worker's whole job)."""
    trained = train_task(task)
    return {**trained, **measure_task(task, trained)}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _parameters(learner) -> list:
    seen, out = set(), []
    for v in vars(learner).values():
        if isinstance(v, torch.nn.Module):
            for p in v.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


# -- traceability --------------------------------------------------------------------------------
def traceability_of(learner, ckpt: dict, credit: str, data: dict, episodes: int, seed: int, *,
                    shaping: float = 0.0, shaping_potential: str = "carrying") -> dict:
    """The final policy plays ``episodes`` episodes on batched floors (seeded ``seed``, policy draws from
    ``numpy.random.default_rng(seed)``); each robot's true contribution is re-simulated; the credit the arm
    assigns over the same episodes is correlated with it: ``within`` (per-episode means removed from both,
    so only *who* helped counts) and ``pooled``."""

    kw = {"scenario": {k: v for k, v in data.items() if k != "train"}, "max_steps": int(ckpt["env_kwargs"].get("max_steps", 500)),
          "obs_radius": int(ckpt["obs_radius"]), "obs": "features"}
    T = kw["max_steps"]
    rng = np.random.default_rng(seed)
    env = BatchedWarehouseEnv(n_envs=episodes, seed=seed, device="cpu", **kw)
    N = env.n_agents
    ids = np.tile(np.arange(N), episodes)

    def act(obs):
        o = obs.cpu().numpy() if hasattr(obs, "cpu") else np.asarray(obs)
        return torch.as_tensor(decide(learner, o.reshape(episodes * N, -1), ids, "sample", rng).reshape(episodes, N))

    try:
        ep = record_episodes(env, act, T, seed=seed)
    finally:
        env.close()
    true = ep.team_return[:, None] - counterfactual_returns(ep.initial, ep.actions)
    assigned = assigned_credit(credit, learner, ep, kw, seed, shaping=shaping, shaping_potential=shaping_potential)
    centered_a = assigned - assigned.mean(1, keepdim=True)
    centered_t = true - true.mean(1, keepdim=True)
    rows = {"episode": np.repeat(np.arange(episodes), N).tolist(), "robot": np.tile(np.arange(N), episodes).tolist(),
            "assigned": assigned.reshape(-1).double().tolist(), "true": true.reshape(-1).double().tolist()}
    return {"within": traceability(centered_a, centered_t), "pooled": traceability(assigned, true), "rows": rows}


def assigned_credit(credit: str, learner, ep, env_kwargs: dict, seed: int, *, shaping: float = 0.0,
                    shaping_potential: str = "carrying"):
    """``(E, N)``: the credit an arm gives each robot over the recorded episodes ``ep``.

    ``global``: the team return, for every robot; ``difference``: the robot's summed difference
    rewards; ``shaped``: its summed individual rewards plus the shaping term; ``individual``: its own
    rewards; ``utility``: value decomposition's own credit, the summed ``dQ_tot/dQ_i * Q_i(o_i, u_i)`` of
    the learner's mixer over the steps (VDN: ``Q_i``). The episodes are replayed from the same initial
    floors with the same actions, in an env paying that allocation."""

    E, N = ep.team_return.shape[0], ep.actions.shape[-1]
    if credit == "global":
        return ep.team_return[:, None].expand(E, N).double().clone()
    env = BatchedWarehouseEnv(n_envs=E, seed=seed, device="cpu",
                              credit="difference" if credit == "difference" else "individual",
                              shaping=shaping if credit == "shaped" else 0.0, shaping_potential=shaping_potential,
                              **env_kwargs)
    total = torch.zeros(E, N, dtype=torch.float64)
    alive = torch.ones(E, dtype=torch.bool)
    try:
        obs, state, _acting = env.reset(seed=seed)
        for t in range(ep.actions.shape[0]):
            a = ep.actions[t]
            if credit == "utility":
                total += torch.where(alive[:, None], _utility(learner, obs, state, a), 0.0)
            obs, state, rew, done, _acting = env.step(a)
            if credit != "utility":
                total += torch.where(alive[:, None], rew.double(), 0.0)
            alive &= ~done
    finally:
        env.close()
    return total


def _utility(learner, obs, state, actions):
    """Per robot ``dQ_tot/dQ_i * Q_i(o_i, u_i)`` for one step of ``E`` floors (a value-decomposition learner)."""

    E, N, _ = obs.shape
    x = with_ids(torch.as_tensor(obs, dtype=torch.float32).reshape(E * N, -1),
                 torch.arange(N).repeat(E), N)
    with torch.no_grad():
        q = learner.q(x).reshape(E, N, -1).gather(-1, torch.as_tensor(actions).long().unsqueeze(-1)).squeeze(-1)
    qs = q.clone().requires_grad_(True)
    st = torch.as_tensor(state, dtype=torch.float32)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(learner.mixer(qs[:, None], st[:, None]).sum(), qs)
    return (grad * q).double()


# -- deployment ----------------------------------------------------------------------------------
def event_twin(data: dict) -> dict:
    """The scenario in the event tempo with network latency: ``warehouse.tempo = "event"``, the robots'
    durations, and warehouse-tiny-event.toml's wireless network when the file has no links of its own."""
    out = copy.deepcopy(data)
    w = out.setdefault("warehouse", {})
    w["tempo"] = "event"
    w.setdefault("durations", dict(EVENT_DURATIONS))
    w.setdefault("obs_timeout", 1.0)
    for k, v in EVENT_NETWORK.items():
        out.setdefault(k, copy.deepcopy(v))
    out["name"] = f"{out.get('name', 'scenario')}-event"
    return out


def deploy(data: dict, file: str, base_dir: str, checkpoint: str, seed: int, until: float, extra: dict) -> float:
    """Deliveries per hour of the checkpoint as every robot's brain on ``data`` (plus ``extra`` sections)."""
    d = copy.deepcopy(data)
    for k, v in extra.items():
        d[k] = {**d.get(k, {}), **v}
    d.pop("train", None)
    sc = validate(d, file, Path(base_dir))
    res = run(sc, seed, until, file=file, brain=f"checkpoint:{checkpoint}")
    return float(res.summary.get("throughput_per_hour", math.nan))


# -- the study -----------------------------------------------------------------------------------
def load(path: str | os.PathLike) -> tuple[dict, str, Path]:
    """The scenario file's data (ScenarioError, one line, unless it is a warehouse scenario that trains)."""
    file = str(path)
    data, _text, sc = load_data(path)
    if getattr(sc, "warehouse", None) is None:
        raise ScenarioError(file, "warehouse", "a study trains robots: the scenario needs a [warehouse] section")
    if sc.warehouse.tempo != "tick":
        raise ScenarioError(file, "warehouse.tempo", 'a study trains in the tick tempo (tempo = "tick"); '
                                                     "it deploys in the event tempo itself")
    return data, file, Path(path).parent


def arms_for(study: str, algos: list[str], data: dict, lag: float, staleness: int) -> list[Arm]:
    if study == "credit":
        w = float((data.get("train") or {}).get("shaping", 0.0)) or SHAPING
        return credit_arms(algos, w)
    if study == "nonstationarity":
        if len(algos) != 1:
            raise ValueError("the nonstationarity study trains one learner: give one algo")
        return nonstationarity_arms(algos[0], lag, staleness)
    raise ValueError(f"unknown study {study!r} (expected one of {', '.join(STUDIES)})")


def run_study(study: str, path: str | os.PathLike, *, algos: list[str], seeds: int, steps: int, envs: int = 256,
              episodes: int = 64, until: float = 3600.0, event: str | os.PathLike | None = None,
              workers: int = 1, store_path: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
              target: float | None = None, lag: float = 8.0, staleness: int = 0, seed0: int = 0,
              evaluations: int = EVALUATIONS, eval_episodes: int = EVAL_EPISODES,
              progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run a study; write its tables to the store (one run of kind ``study``); return its report."""

    if seeds < 1 or steps < 1 or envs < 1 or episodes < 1 or until <= 0 or evaluations < 1 or eval_episodes < 1:
        raise ValueError("seeds, steps, envs, episodes, evaluations and eval_episodes must be positive and until > 0")
    data, file, base_dir = load(path)
    arms = arms_for(study, algos, data, lag, staleness)
    edata = _event_data(event) if event is not None else event_twin(data)
    for d, where in ((data, file), (edata, str(event or file))):  # every deployment checked before training
        d = {k: v for k, v in d.items() if k != "train"}
        prepare(validate(d, where, base_dir), where)
    store = Store(store_path or DEFAULT_STORE)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="desim-study-"))
    config = {"study": study, "file": file, "algos": list(algos), "seeds": seeds, "steps": steps, "envs": envs,
              "episodes": episodes, "until": until, "event": str(event) if event else "derived", "lag": lag,
              "staleness": staleness, "seed0": seed0, "arms": [asdict(a) for a in arms],
              "criterion": {"converge_frac": CONVERGE_FRAC, "plateau": PLATEAU, "final_frac": FINAL_FRAC,
                            "evaluations": evaluations, "eval_episodes": eval_episodes,
                            "target": target}}
    text = read_text(path)
    trainable = [a for a in arms if not a.trained_as]
    tasks = [Task(a, seed0 + s, steps, data, file, str(base_dir), str(store.path), str(out), envs, episodes,
                  until, edata, evaluations, eval_episodes) for a in trainable for s in range(seeds)]
    results: list[dict] = []
    with store.run("study", scenario=data.get("name"), scenario_text=text, seed=seed0, brain=",".join(algos),
                   config=config) as handle:
        total = len(tasks) + seeds * (len(arms) - len(trainable))
        done = 0
        runs = map(run_task, tasks) if workers <= 1 else LocalPool(workers, in_flight=workers).map(run_task, tasks)
        for r in runs:
            results.append(r)
            done += 1
            if progress:
                progress(done, total, f"{r['arm']} seed {r['seed']}")
        by = {(r["arm"], r["seed"]): r for r in results}
        for a in arms:
            if a.trained_as:  # a deployment switch: the source arm's policy, deployed otherwise
                for s in range(seeds):
                    src = by[(a.trained_as, seed0 + s)]
                    t = Task(a, seed0 + s, steps, data, file, str(base_dir), str(store.path), str(out), envs,
                             episodes, until, edata, evaluations, eval_episodes)
                    results.append({**src, **measure_task(t, src), "arm": a.name})
                    done += 1
                    if progress:
                        progress(done, total, f"{a.name} seed {seed0 + s}")
        report = summarise(study, arms, results, steps, target)
        _write(handle, arms, results, report)
        handle.update_summary({"study": study, "arms": len(arms), "seeds": seeds, "steps": steps,
                               "runs": len(tasks)})
        report["run_id"] = handle.run_id
    report["store"] = str(store.path)
    return report


def _event_data(event) -> dict:
    """The ``--event`` file's data (ScenarioError, one line, unless it is a warehouse in the event tempo)."""
    d, _text, sc = load_data(event)
    if getattr(sc, "warehouse", None) is None or sc.warehouse.tempo != "event":
        raise ScenarioError(str(event), "warehouse.tempo", "--event needs a warehouse scenario in the event tempo")
    return d


def summarise(study: str, arms: list[Arm], results: list[dict], steps: int, target: float | None) -> dict:
    """Per seed and per arm figures (what the tables hold and the CLI prints)."""
    best = max((r for res in results for _, r in res["curve"]), default=math.nan)
    tgt = float(target) if target is not None else CONVERGE_FRAC * best
    seeds_rows = []
    for r in sorted(results, key=lambda r: ([a.name for a in arms].index(r["arm"]), r["seed"])):
        a = next(x for x in arms if x.name == r["arm"])
        conv, first = converged(r["curve"], tgt)
        seeds_rows.append({"arm": a.name, "method": a.method, "algo": a.algo, "switch": a.switch,
                           "setting": a.setting, "seed": r["seed"], "train_run": r["train_run"], "steps": r["steps"],
                           "final_return": final_return(r["curve"], r["steps"]), "converged": conv,
                           "steps_to_converge": first, "traceability": r["traceability"],
                           "traceability_pooled": r["traceability_pooled"], "train_s_per_10k": r["train_s_per_10k"],
                           "params": r["params"], "config_lines": r["config_lines"], "dph_tick": r["dph_tick"],
                           "dph_event": r["dph_event"], "production_gap": r["production_gap"], "wall_s": r["wall_s"]})
    arm_rows = []
    for a in arms:
        rows = [s for s in seeds_rows if s["arm"] == a.name]
        fin = np.array([s["final_return"] for s in rows], dtype=float)
        tr = np.array([s["traceability"] for s in rows], dtype=float)
        trp = np.array([s["traceability_pooled"] for s in rows], dtype=float)
        stc = np.array([s["steps_to_converge"] for s in rows], dtype=float)
        rated = RATINGS.get(a.method, ("", "", "")) if study == "credit" else ("", "", "")
        arm_rows.append({
            "arm": a.name, "method": a.method, "algo": a.algo, "switch": a.switch, "setting": a.setting,
            "control": a.control, "seeds": len(rows), "return_mean": _mean(fin), "return_std": _std(fin),
            "return_var": _std(fin) ** 2 if len(fin) > 1 else math.nan,
            "converged_frac": float(np.mean([s["converged"] for s in rows])) if rows else math.nan,
            "steps_to_converge_mean": _mean(stc), "traceability_mean": _mean(tr),
            "traceability_defined": int(np.isfinite(tr).sum()), "traceability_pooled_mean": _mean(trp),
            "train_s_per_10k": _mean(np.array([s["train_s_per_10k"] for s in rows])),
            "params": int(rows[0]["params"]) if rows else 0, "config_lines": len(a.config),
            "config": "; ".join(a.config),
            "dph_tick_mean": _mean(np.array([s["dph_tick"] for s in rows])),
            "dph_event_mean": _mean(np.array([s["dph_event"] for s in rows])),
            # the arm's gap is the ratio of its mean rates (a mean of per-seed ratios is ruled by near-zero ticks)
            "production_gap_mean": _gap(_mean(np.array([s["dph_event"] for s in rows])),
                                        _mean(np.array([s["dph_tick"] for s in rows]))),
            "rated_complexity": rated[0], "rated_stability": rated[1], "rated_traceability": rated[2]})
    return {"study": study, "target": tgt, "best_return": best, "steps": steps, "arms": arm_rows, "seeds": seeds_rows,
            "curves": [(r["arm"], r["seed"], s, v) for r in results for s, v in r["curve"]],
            "credit": [(r["arm"], r["seed"], r["credit_rows"]) for r in results]}


def _gap(event: float, tick: float) -> float:
    return event / tick - 1 if math.isfinite(event) and math.isfinite(tick) and tick > 0 else math.nan


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan


def _std(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


def _write(handle, arms: list[Arm], results: list[dict], report: dict) -> None:
    def cols(rows: list[dict], names: Iterable[str]) -> dict:
        return {k: [r[k] for r in rows] for k in names}

    handle.append(T.STUDY_SEEDS.name, cols(report["seeds"], T.STUDY_SEEDS.columns))
    handle.append(T.STUDY_ARMS.name, cols(report["arms"], T.STUDY_ARMS.columns))
    curves = report["curves"]
    handle.append(T.STUDY_CURVES.name, {"arm": [c[0] for c in curves], "seed": [c[1] for c in curves],
                                   "step": [c[2] for c in curves], "eval_return": [c[3] for c in curves]})
    credit = {"arm": [], "seed": [], "episode": [], "robot": [], "assigned": [], "true": []}
    for arm, seed, rows in report["credit"]:
        n = len(rows["episode"])
        credit["arm"] += [arm] * n
        credit["seed"] += [seed] * n
        for k in ("episode", "robot", "assigned", "true"):
            credit[k] += rows[k]
    handle.append(T.STUDY_CREDIT.name, credit)


def run_pipeline_study(path: str | os.PathLike, *, seeds: int, until: float | None = None, seed0: int = 1,
                       store_path: str | os.PathLike | None = None,
                       progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Credit in the order pipeline over ``seeds`` seeds (:mod:`desim.app.pipeline_study`): each agent's
    true contribution to each order beside its global and local credit; one ``study`` run in the store."""
    if seeds < 1:
        raise ValueError("seeds must be positive")
    file = str(path)
    data, text, sc = load_data(path)
    if getattr(sc, "pipeline", None) is None:
        raise ScenarioError(file, "pipeline", "the pipeline study needs a scenario with the order pipeline ([pipeline])")
    store = Store(store_path or DEFAULT_STORE)
    results = []
    with store.run("study", scenario=sc.name, scenario_text=text, seed=seed0, brain=None,
                   config={"study": "pipeline", "file": file, "seeds": seeds, "until": until or sc.until,
                           "agents": list(PC.AGENTS)}) as handle:
        for k in range(seeds):
            res = PC.pipeline_credit(sc, seed0 + k, until=until, file=file)
            handle.append(PC.PIPELINE_CREDIT.name, res.rows())
            results.append(res)
            if progress:
                progress(k + 1, seeds, f"seed {seed0 + k}")
        agents = list(PC.AGENTS)
        rows = [o for r in results for o in r.orders]
        true = {a: sum(o.true for o in rows if o.agent == a) for a in agents}
        report = {"study": "pipeline", "run_id": handle.run_id, "seeds": seeds, "store": str(store.path),
                  "orders": sum(r.created for r in results), "completed": sum(r.completed for r in results),
                  "failed": sum(r.failed for r in results), "pending": sum(r.pending for r in results),
                  "agents": [{"agent": a, "true": true[a],
                              "assigned_global": sum(o.assigned_global for o in rows if o.agent == a),
                              "assigned_local": sum(o.assigned_local for o in rows if o.agent == a)} for a in agents],
                  "traceability": {s: traceability(torch.tensor([getattr(o, f"assigned_{s}") for o in rows]),
                                                   torch.tensor([o.true for o in rows])) for s in ("global", "local")}}
        handle.update_summary({"study": "pipeline", "seeds": seeds, "orders": report["orders"],
                               **{f"traceability_{k}": v for k, v in report["traceability"].items()}})
    return report
