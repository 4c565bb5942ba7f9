"""The one way a batch is created, read, changed and finished.

The web app's views and the runners call these functions; nothing else
writes a batch. What a batch is (statuses, the typed row, its JSON) is in
:mod:`core.batches.model`; creating one from an upload in
:mod:`core.batches.ingest`; reading in :mod:`core.batches.store`; its life
after that (cancel, delete, finished, purge) in :mod:`core.batches.lifecycle`.
"""

from core.batches.ingest import StagedRow, create, reserve_id
from core.batches.lifecycle import (
    cancel,
    delete,
    finished,
    forget_idempotency_keys,
    purge,
    reap,
    sweep_done_chunks,
)
from core.batches.model import (
    FINAL_STATUSES,
    SCHEMAS,
    STATUSES,
    WITH_RESULTS,
    Batch,
    Progress,
)
from core.batches.rows import ROW_PROBLEMS, SENTIMENTS, Result, RowError
from core.batches.sort_keys import keys_written, require_keys, write_keys
from core.batches.store import (
    NEWEST,
    PUBLIC_ID_PATTERN,
    export_csv,
    export_results,
    get,
    list_batches,
    require_results,
    results,
    row_errors,
)

__all__ = [
    "FINAL_STATUSES",
    "NEWEST",
    "PUBLIC_ID_PATTERN",
    "ROW_PROBLEMS",
    "SCHEMAS",
    "SENTIMENTS",
    "STATUSES",
    "WITH_RESULTS",
    "Batch",
    "Progress",
    "Result",
    "RowError",
    "StagedRow",
    "cancel",
    "create",
    "delete",
    "export_csv",
    "export_results",
    "finished",
    "forget_idempotency_keys",
    "get",
    "keys_written",
    "list_batches",
    "purge",
    "reap",
    "require_keys",
    "require_results",
    "reserve_id",
    "results",
    "row_errors",
    "sweep_done_chunks",
    "write_keys",
]
