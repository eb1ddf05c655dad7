"""Column names shared by every room (prepared datasets, predictions, audit, scoring)."""

SEQUENCE_NAME = "sequence_name"
SEQUENCE = "sequence"
LABEL = "label"  # observed (possibly noisy) label index; the only label a model trains on
FAMILY_ID = "family_id"  # observed family id (string), matching LABEL
FAMILY_ACCESSION = "family_accession"
CLEAN_LABEL = "clean_label"  # true label index; analysis only, never a model input
CLEAN_FAMILY_ID = "clean_family_id"
IS_NOISY = "is_noisy"
CROP_START = "crop_start"  # 0-based start of the kept window in the original sequence
CROP_END = "crop_end"  # exclusive end of the kept window
LENGTH = "length"

SPLITS = ("train", "dev", "test")

# Rejected rows of a DMS table or mutant library (train-dms RUN_DIR/rejects.csv, score OUT.rejects.csv)
REJECT_ROW = "row"  # 0-based data row, as in nn4dms split files
REJECT_VARIANT = "variant"  # the row's mutant string (or full sequence) as written
REJECT_TOKEN = "token"  # the part that is wrong: a substitution, a sequence, a score value
REJECT_REASON = "reason"
REJECT_COLUMNS = (REJECT_ROW, REJECT_VARIANT, REJECT_TOKEN, REJECT_REASON)

NOVEL = "novel"  # optional split: domains of families held out of train/dev/test (label -1)
