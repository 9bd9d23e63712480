"""telucodec: a neural speech codec toolkit for Telugu and other low-resource languages."""

__version__ = "0.1.0"

from telucodec.api import compress, decompress, load_model  # noqa: E402
from telucodec.codes import Codes  # noqa: E402

__all__ = ["Codes", "compress", "decompress", "load_model", "__version__"]
