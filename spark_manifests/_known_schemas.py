"""The entity schemas a job has met, kept in its state and given to the default reader.

Without them, ``read_enriched`` scans every batch first to learn the
schemas of its entities. A job's committed batches met most of the schemas the next ones
will meet, so the job keeps them in its state (key ``entity_schemas``) and gives them to the
reader: no scan. The write of a batch observes the schemas its lines really held; a batch
that met one not given holds its entities as bad rows, so ``BatchWriter`` writes it
again with the wider list before committing it (a new schema appears once).

Only a reader that declares it (``ReaderAdapter.takes_entity_schemas``: the default
reader) gets the schemas; a custom reader is called as it always was.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._counting import observed_after_write
from ._enriched_schemas import EntitySchemas

if TYPE_CHECKING:
    from ._counting import Loaded
    from ._snapshots import JobSnapshots

_logger = logging.getLogger(__name__)

#: The key of the job's state holding the schemas met, as ``EntitySchemas.as_dict()``.
STATE_KEY = "entity_schemas"

#: How many times a batch is read again with a wider list before its lines of schemas
#: still not given are left as bad rows (only files changing under the job get there).
MAX_WIDENINGS = 2


class KnownSchemas:
    """The schemas met by the committed batches of the job whose state ``snapshots`` hold."""

    def __init__(self, snapshots: JobSnapshots) -> None:
        self._snapshots = snapshots

    def get(self) -> EntitySchemas | None:
        """The schemas known, or ``None`` when none are (a first run: the reader scans)."""
        saved = self._snapshots.state.get(STATE_KEY)
        if saved is None:
            return None
        try:
            return EntitySchemas.from_dict(saved)
        except (ValueError, TypeError, AttributeError) as exc:
            _logger.warning(
                "The job state's %s cannot be read (%s): the batch is scanned for its schemas",
                STATE_KEY,
                exc,
            )
            return None

    def remember(self, met: EntitySchemas) -> None:
        """Add ``met`` (the schemas of a committed batch) to the state; saved with the next
        snapshot."""
        known = self.get()
        if known is None or met - known:
            self._snapshots.keep(STATE_KEY, ((known or EntitySchemas()) | met).as_dict())


def unknown_schemas(loaded: Loaded) -> EntitySchemas:
    """The schemas the read of ``loaded`` met but was not given (after its events were
    written): its lines holding them are bad rows, the batch must be read again."""
    if loaded.enriched is None:
        return EntitySchemas()
    return _observed(loaded, loaded.enriched.unknown_schemas)


def schemas_met(loaded: Loaded) -> EntitySchemas | None:
    """The schemas the read of ``loaded`` met (after its events were written), or ``None``
    for a reader that does not tell."""
    if loaded.enriched is None:
        return None
    return _observed(loaded, loaded.enriched.schemas_met)


def _observed(loaded: Loaded, value: Any) -> Any:
    """``value()``, an observation of the reader's, once the sink wrote the events."""
    assert loaded.enriched is not None
    found = observed_after_write(
        value, loaded.enriched.events, "The reader's schemas were not observed"
    )
    return found if found is not None else value()
