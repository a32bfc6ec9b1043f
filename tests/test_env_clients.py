"""The clients users already have, run on the warehouse env as a new user would (issue 14).

- PettingZoo's own Stable-Baselines3 + SuperSuit recipe (its SB3 tutorial): reset the parallel env
  with a seed, ``pettingzoo_env_to_vec_env_v1``, ``concat_vec_envs_v1(..., base_class=
  "stable_baselines3")``, ``PPO("MlpPolicy", ...).learn``, then the tutorial's evaluation loop on
  the AEC form with ``model.predict``. Each robot is one entry of SB3's vector env, so one policy
  is shared by all robots.
- TorchRL's ``PettingZooWrapper`` with its default ``group_map``: the robots form one group
  ``robot`` (so a ``MultiAgentMLP`` with ``share_params=True`` shares one network), rolled out by a
  random policy (which honours the event tempo's ``action_mask``) and by a ``Collector`` (TorchRL 0.14's name
  for ``SyncDataCollector``).

SB3 counts a timestep per robot: ``total_timesteps`` = copies x robots x floor steps.
The clients are the ``test`` extras in pyproject.toml.
"""
import warnings

import numpy as np
import pytest
import supersuit as ss
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecMonitor
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs.libs.pettingzoo import PettingZooWrapper
from torchrl.modules import MaskedCategorical, MultiAgentMLP, ProbabilisticActor

from desim.models.warehouse.env import env as aec_env
from desim.models.warehouse.env import parallel_env

torch.set_num_threads(1)  # tiny networks: more threads only contend on this 2-core machine

# TorchRL warns that it is tested against PettingZoo 1.24.3; the tests below are what counts here
pytestmark = pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested:UserWarning",
                                        "ignore:The `render_mode` attribute is not defined:UserWarning")


# --- Stable-Baselines3 + SuperSuit: PettingZoo's recipe ---------------------------------------------------------------

def sb3_recipe(copies: int, num_cpus: int, total: int, n_steps: int, **env_kwargs):
    """PettingZoo's SB3 tutorial on the warehouse (VecMonitor added to read the finished episodes)."""
    set_random_seed(0)  # the tutorial's PPO(seed=...) is refused by SuperSuit's vector env (it has no seed())
    env = parallel_env(**env_kwargs)
    env.reset(seed=0)
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    venv = ss.concat_vec_envs_v1(venv, copies, num_cpus=num_cpus, base_class="stable_baselines3")
    venv = VecMonitor(venv)
    first = venv.reset()
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=256, learning_rate=1e-3, verbose=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=total)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    episodes = [int(ep["l"]) for ep in model.ep_info_buffer]
    venv.close()
    return model, first, changed, episodes


def evaluate(model: PPO, max_steps: int, **env_kwargs) -> tuple[int, list[np.ndarray]]:
    """The tutorial's evaluation: the AEC form, one ``model.predict`` per robot turn; a frame per floor step."""
    env = aec_env(render_mode="rgb_array", max_steps=max_steps, **env_kwargs)
    env.reset(seed=1)
    turns, frames = 0, []
    for agent in env.agent_iter():
        obs, _reward, term, trunc, _info = env.last()
        if term or trunc:
            action = None
        else:
            action = int(model.predict(obs, deterministic=True)[0])
            assert env.action_space(agent).contains(action)
            turns += 1
        env.step(action)
        if agent == env.possible_agents[-1] and action is not None:
            frames.append(env.render())
    env.close()
    return turns, frames


def test_sb3_supersuit_recipe_trains_and_the_policy_drives_the_floor():
    copies, robots, max_steps, total = 4, 2, 100, 8192  # 1,024 floor steps per copy, 4,096 in all
    model, first, changed, episodes = sb3_recipe(copies, 0, total, 128, robots=robots, max_steps=max_steps,
                                                 shaping=0.5)
    n = copies * robots
    assert first.shape == (n, 59)
    assert not np.array_equal(first[:robots], first[robots:2 * robots])  # each copy plays its own episode
    assert model.num_timesteps == total and changed  # every step ran, and PPO updated the policy
    # each robot of each copy finished floor_steps // max_steps episodes, each exactly max_steps long
    assert len(episodes) == n * (total // n // max_steps) and set(episodes) == {max_steps}
    turns, frames = evaluate(model, max_steps, robots=robots)
    assert turns == robots * max_steps and len(frames) == max_steps
    assert frames[0].shape == (11 * 32 + 1, 10 * 32 + 1, 3) and frames[0].dtype == np.uint8


@pytest.mark.slow
def test_sb3_recipe_in_worker_processes_in_the_event_tempo():
    """The tutorial's own form: copies in worker processes (``num_cpus=2``), here in the event tempo."""
    copies, robots, max_steps, total = 4, 4, 100, 24_576
    kw = {"size": "small", "zones": 2, "tempo": "event", "delay_mean": 0.02, "jitter": 0.01}
    model, _first, changed, episodes = sb3_recipe(copies, 2, total, 256, robots=robots, max_steps=max_steps, **kw)
    assert model.num_timesteps == total and changed
    assert len(episodes) >= copies * robots  # every copy's robots finished episodes, in the workers
    turns, frames = evaluate(model, max_steps, robots=robots, **kw)
    assert turns > 0 and frames and frames[-1].dtype == np.uint8


# --- TorchRL ------------------------------------------------------------------------------------------------------------

def test_torchrl_wrapper_groups_the_robots_and_honours_the_action_mask():
    env = PettingZooWrapper(parallel_env(size="small", robots=4, zones=2, tempo="event", max_steps=60,
                                         delay_mean=0.02, jitter=0.01), seed=0)
    assert env.group_map == {"robot": ["robot_0", "robot_1", "robot_2", "robot_3"]}  # one group: parameter sharing
    steps = 2000
    td = env.rollout(steps, break_when_any_done=False)  # a random policy, drawn from the masked action spec
    assert td.batch_size == (steps,)
    robot = td["robot"]
    assert robot["observation"].shape == (steps, 4, 59)
    mask, acting = robot["action_mask"], robot["info", "acting"].bool()
    assert torch.equal(mask[..., 1:].any(-1), acting)  # the event tempo's mask: only the robots that decide
    assert (robot["action"][~acting] == 0).all() and (robot["action"][acting] != 0).any()
    assert 0 < acting.float().mean() < 1  # jitter desynchronises the robots
    done = td["next", "done"].squeeze(-1)
    t, t_next = td["robot", "info", "sim_time"][:, 0], td["next", "robot", "info", "sim_time"][:, 0]
    assert done.sum() >= 5 and (t_next[done] == 60.0).all()  # episodes end at the 60 s horizon ...
    assert (t[1:][done[:-1]] < 1.0).all() and (t[1:][~done[:-1]] >= t[:-1][~done[:-1]]).all()  # ... and restart


def test_torchrl_collector_runs_a_shared_policy():
    """TorchRL's multi-agent recipe: one ``MultiAgentMLP`` (``share_params=True``) for the ``robot`` group."""
    torch.manual_seed(0)
    env = PettingZooWrapper(parallel_env(robots=2, max_steps=100), seed=0)
    group = "robot"
    n = len(env.group_map[group])
    net = nn.Sequential(MultiAgentMLP(n_agent_inputs=59, n_agent_outputs=5, n_agents=n, centralized=False,
                                      share_params=True, depth=2, num_cells=64))
    module = TensorDictModule(net, in_keys=[(group, "observation")], out_keys=[(group, "logits")])
    policy = ProbabilisticActor(module, spec=env.full_action_spec[group, "action"],
                                in_keys={"logits": (group, "logits"), "mask": (group, "action_mask")},
                                out_keys=[(group, "action")], distribution_class=MaskedCategorical,
                                return_log_prob=True)
    shared = sum(p.numel() for p in net.parameters())
    assert shared == sum(p.numel() for p in MultiAgentMLP(59, 5, 1, centralized=False, share_params=True,
                                                        depth=2, num_cells=64).parameters())  # one network, any n
    frames, per_batch = 2000, 500
    collector = Collector(env, policy, frames_per_batch=per_batch, total_frames=frames)
    seen, dones, actions = 0, 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for batch in collector:
            seen += batch.numel()
            dones += int(batch["next", "done"].sum())
            actions.append(batch[group, "action"])
            assert batch[group, "action_log_prob"].shape == (per_batch, n)
    collector.shutdown()
    assert seen == frames and dones == frames // 100  # 100-step episodes, reset by the collector
    counts = torch.bincount(torch.cat(actions).reshape(-1), minlength=5)
    assert (counts > 0).all()  # the sampled policy uses every action
