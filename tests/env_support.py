"""Test helpers around the vector env (a support module, not a test file)."""
import numpy as np

from desim.models.warehouse.env import VectorWarehouseEnv


class RecordingEnv(VectorWarehouseEnv):
    """Remembers the observations handed out and the actions received, per robot."""

    def reset(self):
        out = super().reset()
        self.last_obs, self.sent = out[0], []
        return out

    def step(self, actions):
        self.sent.append((self.last_obs.copy(), np.array(actions)))
        out = super().step(actions)
        self.last_obs = out[0]
        return out


def by_content(obs: np.ndarray) -> np.ndarray:
    """An action that is a function of the observation alone (to check actions reach the right robot)."""
    return (np.round(obs[..., 0] * 97 + obs[..., 1] * 89).astype(int) + 7 * obs[..., 2:6].argmax(-1)) % 5
