"""ISO 4217 currencies that can be paid, with their minor-unit exponents."""

from __future__ import annotations

# Active ISO 4217 codes with their exponents. XXX, XTS, funds codes and precious metals are not money a
# benefit is paid in and are left out on purpose.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD "
        "CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD "
        "HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MKD MMK "
        "MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD "
        "RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS "
        "UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWL".split(),
        2,
    ),
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}


def is_payable_currency(code: str) -> bool:
    return code in MINOR_UNITS


def fits_minor_units(code: str, hundredths: int) -> bool:
    """A 0-decimal currency cannot carry cents; 2- and 3-decimal ones take any hundredths."""
    return MINOR_UNITS[code] >= 2 or hundredths % 100 == 0
