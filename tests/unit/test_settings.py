"""The one settings loader (gpo_kernel/settings.py) and its users: GPO_* variables, the rails file, rail
options and G2P Connect settings. Unknown keys are refused with where they came from and the key meant,
secrets come from `{env=}` / `{file=}` and never show, conflicts fail at start, settings are frozen and the
rails file is read once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from gpo_kernel.rails_config import RailConfig, load_rails_config
from gpo_kernel.settings import ConfigError, Environment, check_environment, resolve_secret
from gpo_server.app import Orchestrator
from gpo_server.config import Settings
from gpo_server.embedded import check_rails
from gpo_server.g2p_connect import config as g2p_config
from rail_sidecars.sdk.options import Options

RAILS = """
[rails.mpesa]
kind = "simulator"
routes = ["mobile:*@mpesa"]
chunk_size = 250
[rails.mpesa.options]
failure_rate = 0

[defaults]
default_rail = "mpesa"
"""


def rails_file(tmp_path: Path, text: str = RAILS) -> Path:
    path = tmp_path / "rails.toml"
    path.write_text(text)
    return path


# ---- unknown keys ----------------------------------------------------------------------------------


def test_an_unknown_gpo_variable_is_refused_with_the_name_meant() -> None:
    with pytest.raises(
        ConfigError,
        match=r"environment: unknown variable GPO_DATABSE_URL \(did you mean GPO_DATABASE_URL\?\)",
    ):
        Settings.from_env({"GPO_DATABSE_URL": "postgresql://h/db"})
    with pytest.raises(ConfigError, match="unknown variable GPO_FROBNICATE") as far:
        Settings.from_env({"GPO_FROBNICATE": "1"})
    assert "did you mean" not in str(far.value)


def test_other_programs_gpo_variables_and_other_prefixes_are_left_alone() -> None:
    env = {
        "GPO_TEST_DATABASE_URL": "x",
        "GPO_GATEWAY_LISTEN": ":8080",
        "GPO_PG_USER": "gpo",
        "GPO_RAIL": "x",
        "PATH": "/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h",
    }
    assert Settings.from_env(env).listen == "127.0.0.1:50051"
    # A prefix stands for its own family only: a typo of a GPO variable next to one is still refused.
    with pytest.raises(ConfigError, match="GPO_RAILS_CONFG"):
        check_environment({"GPO_RAILS_CONFG": "rails.toml"})


def test_a_gpo_variable_a_rails_file_names_as_a_secret_is_known(tmp_path: Path) -> None:
    path = rails_file(tmp_path, RAILS.replace("failure_rate = 0", 'api_key = { env = "GPO_MPESA_KEY" }'))
    settings = Settings.from_env({"GPO_RAILS_CONFIG": str(path), "GPO_MPESA_KEY": "k"})
    assert settings.rails_file is not None
    assert settings.rails_file.rails["mpesa"].option("api_key", env={"GPO_MPESA_KEY": "k"}) == "k"


def test_an_unknown_key_in_the_rails_file_names_the_file_the_rail_and_the_key_meant(tmp_path: Path) -> None:
    path = rails_file(tmp_path, RAILS.replace("chunk_size = 250", "chunk_sise = 250"))
    with pytest.raises(
        ConfigError, match=rf"{path}: rails.mpesa: unknown setting 'chunk_sise' \(did you mean chunk_size\?\)"
    ):
        load_rails_config(path)
    with pytest.raises(ConfigError, match=r"unknown setting 'default'"):
        load_rails_config(rails_file(tmp_path, RAILS + "[default]\n"))
    with pytest.raises(
        ConfigError, match=r"defaults: unknown setting 'default_rial' \(did you mean default_rail\?\)"
    ):
        load_rails_config(rails_file(tmp_path, RAILS.replace("default_rail =", "default_rial =")))


def test_an_unknown_rail_option_is_refused_with_the_option_meant() -> None:
    config = RailConfig("mm", "gsma", options={"base_ulr": "http://h"})
    with pytest.raises(
        ConfigError,
        match=r"rails.mm.options: unknown GSMA options \['base_ulr'\] \(did you mean base_url\?\)",
    ):
        Options(config, "GSMA", ["base_url", "api_key"])


def test_unknown_g2p_connect_keys_are_refused_in_every_table(tmp_path: Path) -> None:
    path = tmp_path / "g2p.toml"
    cases = {
        'reciever_id = "gpo"\n': r"unknown setting 'reciever_id' \(did you mean receiver_id\?\)",
        "[mapper]\nurl = 'http://m'\ntimeout = 3\n": r"\[mapper\]: unknown setting 'timeout' \(did you mean timeout_s\?\)",
        "[callbacks]\nbearer = 't'\n": r"\[callbacks\]: unknown setting 'bearer'",
        '[senders."spp"]\nprograms = ["p"]\nrequire_signatures = false\n': (
            r"\[senders.'spp'\]: unknown setting 'require_signatures' \(did you mean require_signature\?\)"
        ),
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            g2p_config.load(path, tmp_path / "data")


# ---- secrets ---------------------------------------------------------------------------------------


def test_secret_gpo_variables_take_env_and_file_references(tmp_path: Path) -> None:
    (tmp_path / "hs256").write_text("first,second\n")
    settings = Settings.from_env(
        {
            "GPO_AUTH_HS256_SECRETS": f"{{file={tmp_path / 'hs256'}}}",
            "GPO_DATABASE_URL": "{env=DB_URL}",
            "DB_URL": "postgresql+asyncpg://u:pw@h/db",
            "GPO_TOKEN": "{ env = CLI_TOKEN }",
            "CLI_TOKEN": "jwt",
            "GPO_WEBHOOK_SECRET": "whsec_plain",
        }
    )
    assert settings.auth_hs256_secrets == (b"first", b"second")
    assert settings.database_url == "postgresql+asyncpg://u:pw@h/db"
    assert settings.token == "jwt" and settings.webhook_secret == "whsec_plain"
    shown = repr(settings)
    for secret in ("first", "pw@h", "jwt", "whsec_plain"):
        assert secret not in shown


def test_a_missing_secret_reference_names_the_setting_and_never_a_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GPO_SIDECAR_TOKEN: environment variable NOT_SET is not set"):
        Environment({"GPO_SIDECAR_TOKEN": "{env=NOT_SET}"}).secret("GPO_SIDECAR_TOKEN")
    with pytest.raises(ConfigError, match=f"GPO_TOKEN: cannot read {tmp_path / 'absent'}"):
        Environment({"GPO_TOKEN": f"{{file={tmp_path / 'absent'}}}"}).secret("GPO_TOKEN")
    with pytest.raises(ConfigError, match="a secret reference is"):
        resolve_secret({"env": "A", "default": "s3cret"}, "rails.x.options.api_key", {})


def test_rail_options_take_env_and_file_references_in_both_forms(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file\n")
    options = {
        "a": {"env": "RAIL_KEY"},
        "b": "{env=RAIL_KEY}",
        "c": {"file": str(tmp_path / "key")},
        "d": f"{{file={tmp_path / 'key'}}}",
    }
    config = RailConfig("r", "gsma", options=options)
    env = {"RAIL_KEY": "from-env"}
    assert [config.option(k, env=env) for k in "abcd"] == ["from-env", "from-env", "from-file", "from-file"]


def test_g2p_connect_tokens_take_env_and_file_references_and_stay_out_of_reprs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mapper.token").write_text("mapper-secret\n")
    monkeypatch.setenv("G2P_CALLBACK_TOKEN", "callback-secret")
    path = tmp_path / "g2p.toml"
    path.write_text(
        f"""
[mapper]
url = "http://mapper"
bearer_token = {{ file = "{tmp_path / "mapper.token"}" }}
[callbacks]
bearer_token = "{{env=G2P_CALLBACK_TOKEN}}"
[senders."spp"]
programs = ["p"]
keymanager_token = {{ env = "G2P_CALLBACK_TOKEN" }}
"""
    )
    settings = g2p_config.load(path, tmp_path / "data")
    assert settings.mapper.bearer_token == "mapper-secret"
    assert settings.callbacks.bearer_token == "callback-secret"
    assert settings.senders["spp"].keymanager_token == "callback-secret"
    shown = repr(settings.mapper) + repr(settings.callbacks) + repr(settings.senders)
    assert "secret" not in shown
    monkeypatch.delenv("G2P_CALLBACK_TOKEN")
    with pytest.raises(
        ConfigError,
        match=r"senders\.spp\.keymanager_token: environment variable G2P_CALLBACK_TOKEN is not set",
    ):
        g2p_config.load(path, tmp_path / "data")


# ---- conflicts -------------------------------------------------------------------------------------


def test_a_rails_file_with_routes_or_a_default_rail_beside_it_is_a_conflict(tmp_path: Path) -> None:
    path = str(rails_file(tmp_path))
    with pytest.raises(ConfigError, match="GPO_RAILS_CONFIG and GPO_ROUTES are both set"):
        Settings.from_env({"GPO_RAILS_CONFIG": path, "GPO_ROUTES": "mobile:*=simulator"})
    with pytest.raises(ConfigError, match="GPO_RAILS_CONFIG and GPO_ROUTES are both set"):
        Settings(rails_config=path, routes="mobile:*=simulator")
    with pytest.raises(ConfigError, match="GPO_RAILS_CONFIG and GPO_DEFAULT_RAIL are both set"):
        Settings.from_env({"GPO_RAILS_CONFIG": path, "GPO_DEFAULT_RAIL": "simulator"})
    with pytest.raises(ConfigError, match="GPO_WEBHOOK_SECRET and GPO_WEBHOOK_SECRET_FILE are both set"):
        Settings.from_env({"GPO_WEBHOOK_SECRET": "whsec_x", "GPO_WEBHOOK_SECRET_FILE": path})


def test_embedded_mode_refuses_a_routed_rail_it_would_run_on_the_simulator(tmp_path: Path) -> None:
    routed = Settings(routes="mobile:*@mpesa=mpesa")
    with pytest.raises(ConfigError, match="embedded mode: rail 'mpesa' is routed but not configured"):
        check_rails(routed, {})
    check_rails(Settings(), {})  # the default rail, "simulator", is the simulator
    check_rails(Settings(rails_config=str(rails_file(tmp_path))), {})  # kind = "simulator", configured
    check_rails(Settings(routes="mobile:*@mpesa=mpesa", default_rail=""), {"mpesa": object()})  # type: ignore[dict-item]


def test_the_embedded_orchestrator_does_not_start_with_an_unconfigured_rail(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, listen="127.0.0.1:0", routes="mobile:*@mpesa=mpesa")
    with pytest.raises(ConfigError, match="rail 'mpesa' is routed but not configured"):
        Orchestrator(settings)
    assert not (tmp_path / "gpo.db").exists(), "nothing may start before the settings are checked"


# ---- frozen, read once ------------------------------------------------------------------------------


def test_settings_are_frozen_and_a_change_is_a_new_settings() -> None:
    settings = Settings.from_env({"GPO_LISTEN": "0.0.0.0:50051"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.listen = "127.0.0.1:1"  # type: ignore[misc]
    changed = dataclasses.replace(settings, listen="127.0.0.1:1")
    assert (settings.listen, changed.listen) == ("0.0.0.0:50051", "127.0.0.1:1")
    # A list given anyway (as a caller without type checks might) is kept as a tuple.
    assert Settings(auth_hs256_secrets=[b"s"]).auth_hs256_secrets == (b"s",)  # type: ignore[arg-type]


def test_the_rails_file_is_read_once_when_the_settings_are_built(tmp_path: Path) -> None:
    path = rails_file(tmp_path)
    settings = Settings.from_env({"GPO_RAILS_CONFIG": str(path)})
    path.unlink()  # everything after start answers from what was read
    assert settings.router().rail_for("mobile:1@mpesa") == "mpesa"
    assert settings.chunk_sizes() == {"mpesa": 250} and settings.rails() == ["mpesa"]
    check_rails(settings, {})
    again = dataclasses.replace(settings, listen="127.0.0.1:0")  # a CLI flag on top: no second read
    assert again.rails_file is settings.rails_file
    with pytest.raises(ConfigError, match=f"GPO_RAILS_CONFIG: cannot read {path}"):
        Settings.from_env({"GPO_RAILS_CONFIG": str(path)})


def test_the_reader_knows_only_documented_variables_and_names_them_in_errors() -> None:
    with pytest.raises(KeyError, match="GPO_NOT_DOCUMENTED"):
        Environment({}).text("GPO_NOT_DOCUMENTED")
    with pytest.raises(ConfigError, match="GPO_WORK_CHUNK_SIZE: not a whole number: 'lots'"):
        Settings.from_env({"GPO_WORK_CHUNK_SIZE": "lots"})


# ---- the commands ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "typo", "meant"),
    [
        (["gpo_server.cli", "batches"], "GPO_SERVR", "GPO_SERVER"),
        (["rail_sidecars.cli", "--rail", "simulator"], "GPO_SIDECAR_TOKN", "GPO_SIDECAR_TOKEN"),
    ],
)
def test_both_commands_refuse_an_unknown_variable_before_doing_anything(
    command: list[str], typo: str, meant: str, tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "GPO_DATA_DIR": str(tmp_path), typo: "x"}
    done = subprocess.run(
        [sys.executable, "-m", *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert f"unknown variable {typo} (did you mean {meant}?)" in done.stderr


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        (["--simulator", "failure_rate=0.5"], {}),
        (["--ledger", "other.db"], {}),
        ([], {"GPO_SIMULATOR": "failure_rate=0.5"}),
        ([], {"GPO_SIMULATOR_LEDGER": "other.db"}),
    ],
)
def test_the_sidecar_refuses_simulator_settings_beside_a_rails_file(
    flags: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    rails = tmp_path / "rails.toml"
    rails.write_text('[rails.simulator]\nkind = "simulator"\n')
    done = subprocess.run(
        [sys.executable, "-m", "rail_sidecars.cli", "--rail", "simulator", "--config", str(rails), *flags],
        env={"PATH": "/usr/bin:/bin", "GPO_DATA_DIR": str(tmp_path), "GPO_SIDECAR_TOKEN": "t", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "configure the simulator only when there is no rails file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["gpo_server.cli", "batches"],
        ["rail_sidecars.cli", "--rail", "simulator"],
        ["gpo_conformance.kit", "--rail", "simulator", "--sidecar", "true"],
    ],
)
def test_every_command_reports_an_unset_secret_reference_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "GPO_DATA_DIR": str(tmp_path),
        "GPO_AMQP_URL": "{env=GPO_TEST_NOT_SET_ANYWHERE}",
        "GPO_DATABASE_URL": "{env=GPO_TEST_NOT_SET_ANYWHERE}",
    }
    done = subprocess.run(
        [sys.executable, "-m", *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "environment variable GPO_TEST_NOT_SET_ANYWHERE is not set" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
