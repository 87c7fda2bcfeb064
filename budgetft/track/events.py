"""Reading the scalars back out of TensorBoard event files while they are being written.

The driver forwards each trial's curves to MLflow and W&B from the event files its worker writes
(budgetft.track.tensorboard), so the trial's process talks to no server. An event file is a
sequence of TFRecords: an 8-byte little-endian length, its masked CRC-32C, the serialized Event
protobuf, and the data's masked CRC-32C. A reader remembers its offset and reads on from there;
a record the writer has not finished (its bytes not all there, or a checksum that does not match
yet) ends the read, to be read again whole next time.

Only simple scalars are read (what add_scalar writes); text and the file's version record are
skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from budgetft.track.facts import Point

# Imported inside functions: tensorboardX (its protobufs; importing it imports torch).

EVENTS_GLOB = "events.out.tfevents.*"
HEADER = 12  # length (8 bytes) and its CRC (4)
FOOTER = 4  # the data's CRC


@dataclass
class EventsReader:
    """The scalars of every event file in one folder, each read once, in file order."""

    folder: Path
    offsets: dict[str, int] = field(default_factory=dict)

    def read_new(self) -> list[Point]:
        if not self.folder.is_dir():
            return []
        points: list[Point] = []
        for path in sorted(self.folder.glob(EVENTS_GLOB)):
            new, self.offsets[path.name] = scalars_from(path, self.offsets.get(path.name, 0))
            points += new
        return points


def scalars_from(path: Path, offset: int = 0) -> tuple[list[Point], int]:
    """The scalars recorded in `path` from byte `offset` on, and the offset after the last
    whole record."""
    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    points: list[Point] = []
    at = 0
    while at + HEADER <= len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[at + 8 : at + HEADER])[0] != masked_crc32c(header):
            break  # not a whole header yet
        end = at + HEADER + length + FOOTER
        if end > len(data):
            break
        payload = data[at + HEADER : at + HEADER + length]
        if struct.unpack("<I", data[end - FOOTER : end])[0] != masked_crc32c(payload):
            break
        event = event_pb2.Event()
        event.ParseFromString(payload)
        for value in event.summary.value:
            if value.HasField("simple_value"):
                points.append(Point(int(event.step), value.tag, float(value.simple_value), float(event.wall_time)))
        at = end
    return points, offset + at
