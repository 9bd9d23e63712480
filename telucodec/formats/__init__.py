"""Bytes and files, no model: audio in and out, datasets on disk, `Codes`, the .tcd bitstream
(bitpack, entropy), token folders (read and write). Imports only `telucodec.errors`."""
