"""One generator per ALeRCE subclass: true g and r magnitudes at the visits of an object, its
reference-image brightness, contextual features and the true parameters (for tests).

Parameter ranges follow published populations; sources are cited next to each generator and
summarised in the data card (`models/data/ztf-sim-sample/DATACARD.md`). Magnitudes are AB,
time in days (observer frame: transient and quasar time scales are stretched by 1 + z).

The generators are grouped by family (:mod:`.transients`, :mod:`.stochastic`, :mod:`.periodic`);
:mod:`.counterparts` draws their catalogue context and :mod:`.source` holds what they return and
the helpers they share.
"""

from __future__ import annotations

from models.simulate.sources.periodic import cep, dsct, eclipsing, lpv, periodic_other, rrl
from models.simulate.sources.source import Generator, Source
from models.simulate.sources.stochastic import agn, blazar, cv_nova, qso, yso
from models.simulate.sources.transients import slsn, snia, snibc, snii

__all__ = ["GENERATORS", "Generator", "Source"]

GENERATORS: dict[str, Generator] = {
    "SNIa": snia,
    "SNIbc": snibc,
    "SNII": snii,
    "SLSN": slsn,
    "QSO": qso,
    "AGN": agn,
    "Blazar": blazar,
    "CV/Nova": cv_nova,
    "YSO": yso,
    "LPV": lpv,
    "E": eclipsing,
    "DSCT": dsct,
    "RRL": rrl,
    "CEP": cep,
    "Periodic-Other": periodic_other,
}
