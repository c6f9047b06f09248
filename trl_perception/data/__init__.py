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
"""Dataset builders for the Perception-R1 tasks, all emitting the shared schema of `trl_perception.data.schema`."""

from ._common import BuildReport, DataError, PerceptionBuilder, PerceptionBuilderConfig, dataset_metadata
from .coco_detection import CocoDetection, CocoDetectionConfig, coco_categories, load_coco_detection, load_coco_json
from .page_ocr import PageOcr, PageOcrConfig, load_page_ocr
from .pixmo_count import PixmoCount, PixmoCountConfig, load_pixmo_count
from .refcoco import RefCoco, RefCocoConfig, load_refcoco
from .schema import PERCEPTION_FEATURES, TASKS, empty_row, perception_features, select_perception_columns
from .synthetic import SyntheticShapes, SyntheticShapesConfig, load_synthetic_shapes


__all__ = [
    "PERCEPTION_FEATURES",
    "TASKS",
    "BuildReport",
    "CocoDetection",
    "CocoDetectionConfig",
    "DataError",
    "PageOcr",
    "PageOcrConfig",
    "PerceptionBuilder",
    "PerceptionBuilderConfig",
    "PixmoCount",
    "PixmoCountConfig",
    "RefCoco",
    "RefCocoConfig",
    "SyntheticShapes",
    "SyntheticShapesConfig",
    "coco_categories",
    "dataset_metadata",
    "empty_row",
    "load_coco_detection",
    "load_coco_json",
    "load_page_ocr",
    "load_pixmo_count",
    "load_refcoco",
    "load_synthetic_shapes",
    "perception_features",
    "select_perception_columns",
]
