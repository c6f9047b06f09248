# Copyright 2026 The trl-perception Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""`accelerate launch ARGS`, run by `trl-perception train` in a process group of its own (so that a signal to the
command reaches every training process), exiting with the training process's status and no traceback of its own: the
failed training process has printed its error, and the command adds one line."""

from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser

    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    except ImportError:  # a torch build without torch.distributed launches one process only
        ChildFailedError = subprocess.CalledProcessError

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except subprocess.CalledProcessError as e:  # one process (accelerate's simple launcher)
        return e.returncode if e.returncode and e.returncode > 0 else 1
    except ChildFailedError:  # several processes (torch.distributed.run)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, forwarded by `trl-perception train` to the whole group
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
