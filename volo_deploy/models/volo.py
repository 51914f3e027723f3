"""VOLO (Vision Outlooker), inference only, state-dict compatible with the official
sail-sg/volo code and timm (same module names, same eval logits)."""

from __future__ import annotations

import torch
from torch import nn

from volo_deploy.models.configs import VoloConfig
from volo_deploy.models.layers import Gelu, TokenLinear
from volo_deploy.models.outlook import OutlookAttention


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = TokenLinear(dim, hidden)
        self.act = Gelu()
        self.fc2 = TokenLinear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Outlooker(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = OutlookAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Multi-head self-attention on a channels-last (B, H, W, C) grid."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = TokenLinear(dim, dim * 3, bias=False)
        self.proj = TokenLinear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, h, w, c))


class Transformer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.kv = TokenLinear(dim, self.head_dim * num_heads * 2, bias=False)
        self.q = TokenLinear(dim, self.head_dim * num_heads, bias=False)
        self.proj = TokenLinear(self.head_dim * num_heads, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        kv = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        q = self.q(x[:, :1, :]).reshape(b, self.num_heads, 1, self.head_dim) * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        cls = (attn @ v).transpose(1, 2).reshape(b, 1, self.head_dim * self.num_heads)
        return self.proj(cls)


class ClassBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ClassAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, :1] + self.attn(self.norm1(x))
        cls = cls + self.mlp(self.norm2(cls))
        return torch.cat([cls, x[:, 1:]], dim=1)


class PatchEmbed(nn.Module):
    """Three-conv stem (stride 2) then a patch projection (stride patch_size / 2)."""

    def __init__(self, in_chans: int, hidden: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, hidden, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.proj = nn.Conv2d(hidden, embed_dim, patch_size // 2, stride=patch_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x))


class Downsample(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim_out, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class VOLO(nn.Module):
    """VOLO classifier: (B, 3, S, S) images -> (B, num_classes) eval logits."""

    def __init__(self, cfg: VoloConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims, heads, mlp = cfg.embed_dims, cfg.num_heads, cfg.mlp_ratio
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.stem_hidden_dim, dims[0], cfg.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid_size, cfg.grid_size, dims[-1]))
        network: list[nn.Module] = [
            nn.Sequential(*(Outlooker(dims[0], heads[0], mlp) for _ in range(cfg.layers[0]))),
            Downsample(dims[0], dims[1], cfg.pooling_scale),
        ]
        for i in range(1, len(cfg.layers)):
            network.append(nn.Sequential(*(Transformer(dims[i], heads[i], mlp) for _ in range(cfg.layers[i]))))
        self.network = nn.ModuleList(network)
        self.post_network = nn.ModuleList(ClassBlock(dims[-1], heads[-1], mlp) for _ in range(cfg.num_post_layers))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[-1]))
        self.aux_head = TokenLinear(dims[-1], cfg.num_classes)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = TokenLinear(dims[-1], cfg.num_classes)
        self.eval()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1)
        for idx, block in enumerate(self.network):
            if idx == 2:
                x = x + self.pos_embed
            x = block(x)
        b, _, _, c = x.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, -1, c)], dim=1)
        for block in self.post_network:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.head(x[:, 0]) + 0.5 * self.aux_head(x[:, 1:]).max(dim=1).values
