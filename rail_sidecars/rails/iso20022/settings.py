"""Options of an ISO 20022 bank-file rail, read from its [rails.NAME.options] table (docs/rails/iso20022.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpo_kernel.rails_config import ConfigError, RailConfig
from rail_sidecars.rails.iso20022.codes import DEFAULT_SUCCESS_STATUSES
from rail_sidecars.rails.iso20022.delivery_sftp import SftpSettings
from rail_sidecars.rails.iso20022.pain001 import DEFAULT_SCHEMES, Debtor, PaymentType
from rail_sidecars.sdk.options import Options

_KNOWN = {
    "transport",
    "pain001_dir",
    "reports_dir",
    "sftp_host",
    "sftp_port",
    "sftp_user",
    "sftp_private_key",
    "sftp_passphrase",
    "sftp_password",
    "sftp_known_hosts",
    "sftp_host_key",
    "sftp_insecure_skip_host_key_check",
    "debtor_name",
    "debtor_iban",
    "debtor_bic",
    "debtor_currency",
    "initiating_party",
    "initiating_party_id",
    "service_level",
    "category_purpose",
    "schemes",
    "xsd_path",
    "validate",
    "success_statuses",
    "report_timeout_s",
    "poll_interval_s",
    "reversal_grace_s",
    "execution_days_ahead",
    "batch_booking",
    "acsp_final",
    "charset",
}


@dataclass(frozen=True)
class Iso20022Settings:
    pain001_dir: str
    reports_dir: str
    debtor: Debtor
    transport: str = "folder"
    sftp: SftpSettings | None = None
    debtor_currency: str = ""  # when set, payments in other currencies fail without being sent
    payment_type: PaymentType = field(default_factory=PaymentType)
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    xsd_path: Path | None = None  # None: files are not validated (validate = false)
    success_statuses: frozenset[str] = DEFAULT_SUCCESS_STATUSES
    report_timeout_s: float = 60.0  # how long execute and look_up wait for the bank's statuses
    poll_interval_s: float = 1.0  # how often the reports folder is read
    reversal_grace_s: float = 60.0  # a return is reported this long after its success was handed over
    execution_days_ahead: int = 0  # ReqdExctnDt = today (UTC) + this
    transport_timeout_s: float = 30.0
    batch_booking: bool = False  # BtchBookg in every block: one booking per block (true) or per transfer
    charset: str = "latin"  # names and texts transliterated to the SWIFT/EPC Latin set, or "unicode"

    def __post_init__(self) -> None:
        self.debtor.check()
        if self.transport not in ("folder", "sftp"):
            raise ValueError(f"transport must be folder or sftp, not {self.transport!r}")
        if self.transport == "sftp" and self.sftp is None:
            raise ValueError("transport sftp needs the sftp_* options")
        if self.charset not in ("latin", "unicode"):
            raise ValueError(f"charset must be latin or unicode, not {self.charset!r}")
        if self.report_timeout_s <= 0 or self.poll_interval_s <= 0 or self.reversal_grace_s < 0:
            raise ValueError("report_timeout_s and poll_interval_s must be > 0, reversal_grace_s >= 0")


def settings_from_config(config: RailConfig) -> Iso20022Settings:
    if "state_dir" in config.options:
        raise ConfigError(
            f"rail {config.name}: state_dir is gone: the ISO 20022 rail keeps its key map and the files it"
            " sends in GPO (rail notes), so any replica resumes any file; remove the option"
        )
    o = Options(config, "ISO 20022", _KNOWN)
    try:
        return _settings(o)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"rails.{config.name}.options: {exc}") from exc


def _settings(o: Options) -> Iso20022Settings:
    transport = o.text("transport", "folder")
    sftp = None
    if transport == "sftp":
        sftp = SftpSettings(
            host=o.required("sftp_host"),
            port=o.integer("sftp_port", 22),
            username=o.required("sftp_user"),
            pain001_dir=o.required("pain001_dir"),
            reports_dir=o.required("reports_dir"),
            private_key=o.text("sftp_private_key"),
            passphrase=o.text("sftp_passphrase"),
            password=o.text("sftp_password"),
            known_hosts=o.text("sftp_known_hosts"),
            host_key=o.text("sftp_host_key"),
            insecure_skip_host_key_check=o.flag("sftp_insecure_skip_host_key_check", False),
            timeout_s=o.config.timeout_s,
        )
    xsd_path: Path | None = None
    if o.flag("validate", True):
        default_xsd = o.env.text("GPO_SPECS_DIR")
        xsd = o.text("xsd_path") or (
            str(Path(default_xsd) / "iso20022" / "pain.001.001.09.xsd") if default_xsd else ""
        )
        if not xsd:
            raise ConfigError(
                f"{o.where('xsd_path')} is required (the pain.001.001.09 XSD every file is "
                "checked against before delivery); set validate = false to send unchecked files"
            )
        xsd_path = Path(xsd)
        if not xsd_path.is_file():
            raise ConfigError(f"{o.where('xsd_path')}: {xsd_path} is not a file")
    return Iso20022Settings(
        pain001_dir=o.required("pain001_dir"),
        reports_dir=o.required("reports_dir"),
        debtor=Debtor(
            name=o.required("debtor_name"),
            iban=o.required("debtor_iban"),
            bic=o.required("debtor_bic"),
            initiating_party=o.text("initiating_party"),
            initiating_party_id=o.text("initiating_party_id"),
        ),
        transport=transport,
        sftp=sftp,
        debtor_currency=o.text("debtor_currency"),
        payment_type=PaymentType(
            service_level=o.text("service_level"),
            category_purpose=o.text("category_purpose"),
        ),
        schemes=tuple(o.get("schemes", list(DEFAULT_SCHEMES))),
        xsd_path=xsd_path,
        # A bank that never reports beyond ACSP (settlement in process) can be taken at its word.
        success_statuses=frozenset(o.get("success_statuses", sorted(DEFAULT_SUCCESS_STATUSES)))
        | (frozenset({"ACSP"}) if o.flag("acsp_final", False) else frozenset()),
        batch_booking=o.flag("batch_booking", False),
        charset=o.text("charset", "latin"),
        report_timeout_s=o.number("report_timeout_s", 60.0),
        poll_interval_s=o.number("poll_interval_s", 1.0),
        reversal_grace_s=o.number("reversal_grace_s", 60.0),
        execution_days_ahead=o.integer("execution_days_ahead", 0),
        transport_timeout_s=o.config.timeout_s,
    )
