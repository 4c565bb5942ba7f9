"""The one way a batch is created, read, changed and finished.

The web app's views and the runners call these functions; nothing else
writes a batch. What a batch is (statuses, the typed row, its JSON) is in
:mod:`core.batches.model`; creating one from an upload in
:mod:`core.batches.ingest`; reading and its life after that in
:mod:`core.batches.store`.
"""

from core.batches.ingest import StagedRow, create
from core.batches.model import (
    FINAL_STATUSES,
    ROW_PROBLEMS,
    SCHEMAS,
    SENTIMENTS,
    STATUSES,
    WITH_RESULTS,
    Batch,
    Progress,
    Result,
    RowError,
)
from core.batches.store import (
    NEWEST,
    cancel,
    delete,
    export_csv,
    export_results,
    finished,
    get,
    list_batches,
    purge,
    require_results,
    results,
    row_errors,
)

__all__ = [
    "FINAL_STATUSES",
    "NEWEST",
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
    "get",
    "list_batches",
    "purge",
    "require_results",
    "results",
    "row_errors",
]
