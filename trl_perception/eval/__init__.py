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
"""Evaluation: the paper's metrics, ``hf`` / ``vllm`` generation backends, a runner that writes a run directory.

```python
from trl_perception.eval import EvalConfig, evaluate, make_backend

backend = make_backend("vllm", "path/to/checkpoint", max_new_tokens=512, skip_special_tokens=False)
result = evaluate(dataset, EvalConfig(task="grounding", frame="qwen2_vl", output_dir="runs/refcoco-val"), backend)
print(result.metrics["acc@0.5"], result.metrics["avg"])
```

From the command line: ``trl-perception eval --config RECIPE`` (the training recipe's held-out split) or
``trl-perception eval --task grounding --model_name_or_path PATH --dataset_name refcoco ...`` (see `cli`). A new task is
one `register_eval_task` call (see `tasks`).
"""

from trl_perception.eval.backends import Generation, HFBackend, VLLMBackend, make_backend
from trl_perception.eval.metrics import (
    coco_detection_metrics,
    counting_metrics,
    get_metric,
    grounding_metrics,
    list_metrics,
    ocr_metrics,
    register_metric,
)
from trl_perception.eval.runner import EvalConfig, EvalResult, evaluate, resolve_frame
from trl_perception.eval.tasks import (
    EvalContext,
    EvalTask,
    get_eval_task,
    list_eval_tasks,
    register_eval_task,
    unregister_eval_task,
)


__all__ = [
    "EvalConfig",
    "EvalContext",
    "EvalResult",
    "EvalTask",
    "Generation",
    "HFBackend",
    "VLLMBackend",
    "coco_detection_metrics",
    "counting_metrics",
    "evaluate",
    "get_eval_task",
    "get_metric",
    "grounding_metrics",
    "list_eval_tasks",
    "list_metrics",
    "make_backend",
    "ocr_metrics",
    "register_eval_task",
    "register_metric",
    "resolve_frame",
    "unregister_eval_task",
]
