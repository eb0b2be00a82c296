"""memoryd.storage: the durable log and what is derived from it.

The public API; everything else is reached through its module.
"""

from memoryd.storage.check import CheckProblem, CheckReport, check_data_dir, check_log
from memoryd.storage.errors import LogCorruptionError
from memoryd.storage.lock import DataDirLock, DataDirLockedError
from memoryd.storage.log import (
    AppendedRecord,
    Durability,
    EventLog,
    FileLog,
    LogEntry,
    RecordLocation,
)
from memoryd.storage.recovery import RecoveryReport, TornTail
from memoryd.storage.repair import RepairFailedError, RepairReport, repair_data_dir, repair_log

__all__ = [
    "AppendedRecord",
    "CheckProblem",
    "CheckReport",
    "DataDirLock",
    "DataDirLockedError",
    "Durability",
    "EventLog",
    "FileLog",
    "LogCorruptionError",
    "LogEntry",
    "RecordLocation",
    "RecoveryReport",
    "RepairFailedError",
    "RepairReport",
    "TornTail",
    "check_data_dir",
    "check_log",
    "repair_data_dir",
    "repair_log",
]
