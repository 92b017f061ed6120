"""Rotation helpers (torch, batched over any leading dimensions).

Conventions:
- rotation matrices act on column vectors: ``p_out = R @ p_in``;
- axis-angle vectors ``omega`` (..., 3): direction = axis, norm = angle in radians (right hand);
- quaternions are ``(x, y, z, w)`` (ROS / scipy order), unit norm; ``q`` and ``-q`` are the
  same rotation, ``quaternion_continuity`` picks the sign closest to a reference.

Everything here accepts torch tensors of float32/float64; the quaternion helpers also accept
numpy arrays and then return numpy arrays.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "skew",
    "so3_exp",
    "so3_log",
    "project_to_so3",
    "rotation_to_quaternion_xyzw",
    "quaternion_xyzw_to_rotation",
    "quaternion_continuity",
    "rotation_angle_deg",
]


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix: ``skew(a) @ b == cross(a, b)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack(
        (torch.stack((o, -z, y), -1), torch.stack((z, o, -x), -1), torch.stack((-y, x, o), -1)), -2
    )


def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle (..., 3) -> rotation (..., 3, 3); exact and smooth near 0.

    R = (1 - b theta^2) I + a [w]_x + b w w^T with a = sin(theta)/theta, b = (1-cos(theta))/theta^2
    (written with few tensor ops: it runs inside the fitter's iterations)."""
    theta2 = (omega * omega).sum(-1, keepdim=True)  # (..., 1)
    small = theta2 < 1e-8
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta * theta))
    aw = a * omega
    x, y, z = aw.unbind(-1)
    c = 1.0 - b[..., 0] * theta2[..., 0]
    k = torch.stack((c, -z, y, z, c, -x, -y, x, c), -1).unflatten(-1, (3, 3))
    return torch.addcmul(k, (b * omega).unsqueeze(-1), omega.unsqueeze(-2))


def so3_log(rotation: torch.Tensor) -> torch.Tensor:
    """Rotation (..., 3, 3) -> axis-angle (..., 3), angle in [0, pi]; stable near 0 and pi."""
    q = rotation_to_quaternion_xyzw(rotation)
    q = torch.where(q[..., 3:4] < 0, -q, q)  # w >= 0 -> angle in [0, pi]
    v, w = q[..., :3], q[..., 3:4]
    s = v.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(s, w)
    scale = torch.where(s > 1e-7, angle / s.clamp_min(1e-12), 2.0 / w.clamp_min(1e-12))
    return v * scale


def project_to_so3(m: torch.Tensor) -> torch.Tensor:
    """Nearest rotation (Frobenius) to each (..., 3, 3) matrix, via SVD, det = +1."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.det(u @ vh)
    fix = torch.ones(m.shape[:-2] + (3,), dtype=m.dtype, device=m.device)
    fix[..., 2] = torch.sign(d) + (d == 0).to(m.dtype)
    return u @ torch.diag_embed(fix) @ vh


def _as_torch(x):
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float64)), True
    return x, False


def rotation_to_quaternion_xyzw(rotation):
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) in (x, y, z, w) order.

    Branch-free Shepperd-style: the largest of the four candidate denominators is used per
    element, so it is accurate for every rotation (including 180 degrees). The sign is w >= 0
    except exactly at w == 0.
    """
    r, was_np = _as_torch(rotation)
    m00, m01, m02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    m10, m11, m12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    m20, m21, m22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # four candidates, each computed from a different "largest component"
    tw = 1.0 + m00 + m11 + m22
    tx = 1.0 + m00 - m11 - m22
    ty = 1.0 - m00 + m11 - m22
    tz = 1.0 - m00 - m11 + m22
    cand = torch.stack(
        (
            torch.stack((m21 - m12, m02 - m20, m10 - m01, tw), -1),
            torch.stack((tx, m01 + m10, m02 + m20, m21 - m12), -1),
            torch.stack((m01 + m10, ty, m12 + m21, m02 - m20), -1),
            torch.stack((m02 + m20, m12 + m21, tz, m10 - m01), -1),
        ),
        -2,
    )  # (..., 4 candidates, 4 components)
    t = torch.stack((tw, tx, ty, tz), -1)
    best = t.argmax(-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    q = torch.where(q[..., 3:4] < 0, -q, q)
    return q.numpy() if was_np else q


def quaternion_xyzw_to_rotation(q):
    """Quaternions (..., 4) (x, y, z, w), normalised here -> rotation matrices (..., 3, 3)."""
    t, was_np = _as_torch(q)
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = t.unbind(-1)
    r = torch.stack(
        (
            torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)), -1),
            torch.stack((2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)), -1),
            torch.stack((2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)), -1),
        ),
        -2,
    )
    return r.numpy() if was_np else r


def quaternion_continuity(q, reference):
    """Flip the sign of each quaternion (..., 4) whose dot product with ``reference`` is < 0."""
    t, was_np = _as_torch(q)
    ref, _ = _as_torch(reference)
    ref = ref.to(t.dtype)
    out = torch.where((t * ref).sum(-1, keepdim=True) < 0, -t, t)
    return out.numpy() if was_np else out


def rotation_angle_deg(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """Angle (degrees) of the relative rotation ``r_a^T r_b`` for (..., 3, 3) inputs."""
    return torch.rad2deg(so3_log(r_a.transpose(-1, -2) @ r_b).norm(dim=-1))
