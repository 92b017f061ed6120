"""Temporal smoothing of per-track outputs: One-Euro filters (Casiez, Roussel, Vogel, CHI 2012).

One-Euro: an exponential low-pass whose cutoff grows with the (low-passed) speed of the signal:

    alpha(fc, dt) = 1 / (1 + 1 / (2 pi fc dt))
    dx      = (x - x_hat_prev) / dt;     dx_hat = lowpass(dx, alpha(d_cutoff, dt))
    fc      = min_cutoff + beta * |dx_hat|
    x_hat   = lowpass(x, alpha(fc, dt))

So a still signal is filtered at ``min_cutoff`` Hz (little jitter) and a moving one at a higher
cutoff (little lag). The speed estimate of a noisy still signal is not zero, though: noise alone
opens the filter. ``noise_deadzone`` k > 0 subtracts what noise explains:

    sigma^2  = running mean (time constant ``noise_time_s``) of e^2 / 20,  e = x - 3 x1 + 3 x2 - x3
    fc       = min_cutoff + beta * max(0, |dx_hat| - k * sigma / dt * sqrt(a_d / (2 - a_d)))

The third difference e cancels smooth motion (up to constant acceleration) and has variance
20 sigma^2 for white noise of std sigma; sigma / dt * sqrt(a_d / (2 - a_d)) is the std of the
low-passed derivative of such noise (a_d = alpha(d_cutoff, dt)). So a still signal stays near
``min_cutoff`` (within 1.25x of that low-pass's spread up to 1 px of noise, measured), and motion
above the noise opens the filter as before.

Timestamps are in seconds and may be irregular. Everything is vectorised over arbitrary tensor
shapes; ``speed_dims`` makes the speed a Euclidean norm over some axes (e.g. per 2D landmark, or
over the 4 quaternion components) so those axes share one cutoff and one noise estimate.

Units: ``min_cutoff`` and ``d_cutoff`` in Hz; ``beta`` in Hz per (signal unit / s), i.e. it
depends on the channel's units (px, metres, radians, blendshape weight).

One track's filters together: ``smoothing/track.py``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..core.geometry import quaternion_xyzw_to_rotation, rotation_to_quaternion_xyzw

__all__ = ["OneEuroFilter", "RotationFilter"]


def _alpha(cutoff, dt: float):
    r = 2.0 * math.pi * cutoff * dt
    return r / (r + 1.0)


class OneEuroFilter:
    """Vectorised One-Euro filter over tensors (or numpy arrays) of a fixed shape.

    ``min_cutoff``, ``beta``, ``d_cutoff`` are plain attributes (floats, or tensors broadcastable
    to the sample) and may be changed at run time; the change applies from the next sample.
    ``speed_dims``: axes of the sample over which the speed is a norm (None = per element).
    ``noise_deadzone``: speeds up to this many noise stds do not open the filter (module doc;
    0 = the classic One-Euro); the noise is estimated per speed group over ``noise_time_s``.
    The first sample (and the first after ``reset``) is passed through unchanged. A sample whose
    timestamp is not after the previous one returns the previous output and changes nothing.
    Computation is in float64; the output has the input's dtype (and type: numpy in, numpy out).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 speed_dims: int | tuple[int, ...] | None = None, noise_deadzone: float = 0.0,
                 noise_time_s: float = 2.0):
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.speed_dims = speed_dims
        self.noise_deadzone = noise_deadzone
        self.noise_time_s = noise_time_s
        self.reset()

    def reset(self) -> None:
        self._x: torch.Tensor | None = None  # filtered value (float64)
        self._dx: torch.Tensor | None = None  # filtered derivative (float64)
        self._t: float | None = None
        self._inputs: list[torch.Tensor] = []  # the last three inputs, newest last
        self._noise_var: torch.Tensor | None = None  # sigma^2 (per speed group)

    @property
    def noise_std(self) -> torch.Tensor | None:
        """Estimated noise std of the input (per element, or per speed group), or None before 4 samples."""
        return None if self._noise_var is None else self._noise_var.sqrt()

    def _update_noise(self, x: torch.Tensor, dt: float) -> None:
        if len(self._inputs) == 3:
            x3, x2, x1 = self._inputs
            e2 = (x - 3.0 * x1 + 3.0 * x2 - x3).square()
            var = (e2 if self.speed_dims is None else e2.mean(dim=self.speed_dims, keepdim=True)) / 20.0
            if self._noise_var is None:
                self._noise_var = var
            else:  # clipped: a sudden jump (a step, a re-detection) must not inflate the estimate at once
                var = torch.minimum(var, 4.0 * self._noise_var)
                self._noise_var = self._noise_var + _alpha(1.0 / (2.0 * math.pi * self.noise_time_s), dt) * (
                    var - self._noise_var)
        self._inputs = (self._inputs + [x])[-3:]

    @property
    def initialized(self) -> bool:
        return self._x is not None

    @property
    def value(self) -> torch.Tensor | None:
        """Current filtered value (float64 tensor) or None before the first sample."""
        return self._x

    def __call__(self, x, t: float):
        was_np = isinstance(x, np.ndarray)
        xt = torch.from_numpy(np.asarray(x)) if was_np else torch.as_tensor(x)
        out_dtype = xt.dtype if xt.is_floating_point() else torch.float64
        xd = xt.to(torch.float64)
        t = float(t)
        if self._x is None or self._x.shape != xd.shape:
            self.reset()
            self._x = xd.clone()
            self._dx = torch.zeros_like(xd)
            self._t = t
            self._inputs = [xd]
        elif t > self._t:
            dt = t - self._t
            self._t = t
            dx = (xd - self._x) / dt
            a_d = _alpha(self.d_cutoff, dt)
            self._dx = self._dx + a_d * (dx - self._dx)
            speed = self._dx.abs() if self.speed_dims is None else self._dx.norm(dim=self.speed_dims, keepdim=True)
            if self.noise_deadzone > 0:
                self._update_noise(xd, dt)
                if self._noise_var is not None:
                    noise_speed = self._noise_var.sqrt() / dt * math.sqrt(a_d / (2.0 - a_d))
                    speed = (speed - self.noise_deadzone * noise_speed).clamp_min(0.0)
            beta = (self.beta if isinstance(self.beta, (int, float))
                    else torch.as_tensor(self.beta, dtype=torch.float64, device=xd.device))
            min_cutoff = (self.min_cutoff if isinstance(self.min_cutoff, (int, float))
                          else torch.as_tensor(self.min_cutoff, dtype=torch.float64, device=xd.device))
            cutoff = min_cutoff + beta * speed
            a = _alpha(torch.as_tensor(cutoff, dtype=torch.float64), dt)
            self._x = self._x + a * (xd - self._x)
        out = self._x.to(out_dtype)
        return out.numpy() if was_np else out


def _forwarded(name: str) -> property:
    """A property reading and writing `self.filter.<name>`."""
    return property(lambda self: getattr(self.filter, name), lambda self, v: setattr(self.filter, name, v))


class RotationFilter:
    """One-Euro smoothing of rotations (..., 3, 3) through unit quaternions.

    Each new quaternion is sign-aligned with the filter state (q and -q are the same rotation,
    so a sign flip of the input is never a jump), the 4 components are filtered with one shared
    cutoff (speed = |dq/dt|, about half the angular speed in rad/s) and the result is
    renormalised. ``beta`` is therefore in Hz per (rad/s / 2). Accepts rotation matrices
    (..., 3, 3) or quaternions (..., 4) (x, y, z, w); returns the same kind.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 noise_deadzone: float = 0.0):
        self.filter = OneEuroFilter(min_cutoff, beta, d_cutoff, speed_dims=-1, noise_deadzone=noise_deadzone)

    # the parameters live on the inner filter (settable at run time like OneEuroFilter's)
    min_cutoff = _forwarded("min_cutoff")
    beta = _forwarded("beta")
    d_cutoff = _forwarded("d_cutoff")
    noise_deadzone = _forwarded("noise_deadzone")

    def reset(self) -> None:
        self.filter.reset()

    def __call__(self, rotation, t: float):
        was_np = isinstance(rotation, np.ndarray)
        r = torch.from_numpy(np.asarray(rotation, dtype=np.float64)) if was_np else torch.as_tensor(rotation)
        is_quat = r.shape[-1] == 4
        q = (r / r.norm(dim=-1, keepdim=True)) if is_quat else rotation_to_quaternion_xyzw(r)
        q = q.to(torch.float64)
        prev = self.filter.value
        if prev is not None and prev.shape == q.shape:
            q = torch.where((q * prev).sum(-1, keepdim=True) < 0, -q, q)
        qf = self.filter(q, t)
        qf = qf / qf.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out = qf if is_quat else quaternion_xyzw_to_rotation(qf)
        out = out.to(r.dtype if r.is_floating_point() else torch.float64)
        return out.numpy() if was_np else out
