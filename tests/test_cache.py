"""The one per-user cache folder rule."""

from pathlib import Path

from volo_deploy.cache import cache_dir


def test_cache_dir_precedence(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("VOLO_DEPLOY_CACHE", str(tmp_path / "own"))
    assert cache_dir("calib") == tmp_path / "own" / "calib"
    monkeypatch.delenv("VOLO_DEPLOY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("digits") == tmp_path / "xdg" / "volo_deploy" / "digits"
    # An empty XDG_CACHE_HOME counts as unset (XDG Base Directory spec), in every caller.
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == Path(tmp_path / "home" / ".cache" / "volo_deploy")


def test_callers_share_the_rule(monkeypatch, tmp_path) -> None:
    from volo_deploy.data.digits import default_demo_dir
    from volo_deploy.export.trt_engine import _cache_root
    from volo_deploy.quant.export import default_cache_path

    monkeypatch.delenv("VOLO_DEPLOY_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    root = tmp_path / ".cache" / "volo_deploy"
    assert default_demo_dir() == root / "digits"
    assert _cache_root() == root
    assert default_cache_path("volo_d1", 224, "tensorrt", "minmax").parent == root / "calib"
