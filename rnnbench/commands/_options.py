"""Options shared by several commands, declared once so their flags, values and help stay alike.
Parsing lives in common.py; a command whose default differs reuses the help text."""

import typer

CELL_HELP = "gru, lstm, sru, tlstm, fastgrnn, pru, a comma list, or all"
VARIANT_HELP = "baseline, irc, ihc, a comma list, or all"
# the tables of speed, memory and params show each variant as a ratio to its baseline
BESIDE = "; the baseline is always included, as the reference of the ratios"

DEVICE = typer.Option("cpu", "--device", "-d", help="cpu or cuda (cuda:N)")
CELL = typer.Option("all", "--cell", "-c", help=CELL_HELP)
VARIANT = typer.Option("all", "--variant", "-v", help=VARIANT_HELP + BESIDE)
IRC = typer.Option(False, "--irc", help="shorthand for --variant irc (baseline and IRC)")
IHC = typer.Option(False, "--ihc", help="shorthand for --variant ihc (baseline and IHC)")
FORM_HELP = "paper or canonical (baselines only)"
FORM = typer.Option("paper", "--form", help=FORM_HELP)

BATCH = typer.Option(32, "--batch", "-B", help="batch size B")
SEQ_LEN = typer.Option(128, "--seq-len", "-T", help="sequence length T")
INPUT_SIZE = typer.Option(512, "--input-size", "-N", help="input width N")
HIDDEN_SIZE = typer.Option("512", "--hidden-size", "-M",
                           help="hidden width M, or one per layer: 1150,1150,400")
LAYERS = typer.Option(None, "--layers", "-L", help="layers (repeats one M)")
DTYPE = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 (float64)")
THREADS = typer.Option(None, "--threads", help="CPU threads for torch")
BACKEND = typer.Option("eager", "--backend", "-b",
                       help="eager, compile, native, fused, triton, a comma list, or all")
FOLD = typer.Option("auto", "--fold",
                    help="IRC on the fused backends: auto (the cost model), on (R = W_g·diag(α)·U_V, "
                         "one product a step), off (two), or a comma list; other cases run as written")
IHC_GAMMA = typer.Option("h", "--ihc-gamma",
                         help="IHC gate input: h (eq. 53) or feedback (Γ N×N on U_V h)")
PRU_OUTPUT_MAP = typer.Option(True, "--pru-output-map/--no-pru-output-map",
                              help="PRU's output map y = tanh(W_y s + b_y)")

CSV = typer.Option(None, "--csv", help="write the rows as CSV")
JSON = typer.Option(None, "--json", help="write the rows as JSON")
MARKDOWN = typer.Option(None, "--markdown", help="write the table as Markdown")
OVERWRITE = typer.Option(False, "--overwrite", help="replace output files that exist")

QUIET = typer.Option(False, "--quiet", "-q", help="no progress on stderr (errors still show)")
DRY_RUN = typer.Option(False, "--dry-run", help="list the cases and the time estimate; measure nothing")
FORM_NATIVE_HELP = (FORM_HELP + "; default paper, or canonical with --backend native (torch.nn.GRU "
                    "and LSTM compute the canonical form)")
