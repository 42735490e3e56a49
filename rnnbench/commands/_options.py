"""Sizing options shared by the measuring commands, declared once so their flags stay alike."""

import typer

BATCH = typer.Option(32, "--batch", "-B", help="batch size B")
SEQ_LEN = typer.Option(128, "--seq-len", "-T", help="sequence length T")
INPUT_SIZE = typer.Option(512, "--input-size", "-N", help="input width N")
HIDDEN_SIZE = typer.Option("512", "--hidden-size", "-M",
                           help="hidden width M, or one per layer: 1150,1150,400")
LAYERS = typer.Option(None, "--layers", "-L", help="layers (repeats one M)")
DTYPE = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 (float64)")
THREADS = typer.Option(None, "--threads", help="CPU threads for torch")
