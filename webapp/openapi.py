"""The OpenAPI 3 description of the JSON API, served at /openapi.json.

tests/test_webapp_schema.py runs schemathesis against it: every response must match.
"""

from __future__ import annotations

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
        }
    },
}


def _errors(*codes: int) -> dict:
    text = {
        400: "Bad request (no file, empty file, malformed body)",
        404: "Unknown model name",
        405: "Method not allowed",
        413: "Request body or image too large",
        415: "Unsupported media type",
        422: "Not a readable image",
        503: "Model not loaded",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _json(schema_ref: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


PREDICTION = {
    "type": "object",
    "required": ["filename", "label", "confidence", "unsure", "top"],
    "properties": {
        "filename": {"type": "string"},
        "label": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "unsure": {"type": "boolean"},
        "top": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "probability"],
                "properties": {
                    "label": {"type": "string"},
                    "probability": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
        "heatmap": {"type": "string", "description": "PNG data: URI (with ?explain=true)"},
    },
}

SPEC: dict = {
    "openapi": "3.0.3",
    "info": {
        "title": "Image classifier",
        "version": "1.0.0",
        "description": "Top-k predictions from the exported LiteRT model.",
    },
    "paths": {
        "/api/v1/predict": {
            "post": {
                "summary": "Classify one or more images",
                "parameters": [
                    {
                        "name": "explain",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "Add an occlusion-sensitivity heat map per image",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["image"],
                                "properties": {
                                    "image": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("PredictResponse", "Predictions, in upload order"),
                    **_errors(400, 413, 415, 422, 503),
                },
            }
        },
        "/api/v1/model": {
            "get": {
                "summary": "Describe the served model",
                "responses": {"200": _json("Model", "The model card"), **_errors(503)},
            }
        },
        "/api/v1/drift": {
            "get": {
                "summary": "Live prediction counts per model version (for the drift check)",
                "parameters": [
                    {
                        "name": "version",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("DriftResponse", "Counts of top-1 classes and confidences"),
                    **_errors(404, 503),
                },
            }
        },
        "/v1/models/{name}:predict": {
            "post": {
                "summary": "TensorFlow Serving / KServe V1 REST predict",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": "image-classifier",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/InstancesRequest"}
                        }
                    },
                },
                "responses": {
                    "200": _json("InstancesResponse", "Class probabilities per instance"),
                    **_errors(400, 404, 413, 415, 422, 503),
                },
            }
        },
        "/v1/models/{name}": {
            "get": {
                "summary": "KServe V1 model status",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": "image-classifier",
                    }
                ],
                "responses": {
                    "200": _json("ModelStatus", "Readiness of the named model"),
                    **_errors(404, 503),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _json("Status", "The process is up")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: model loaded and warmed up",
                "responses": {
                    "200": _json("Status", "Ready"),
                    "503": _json("Status", "Not ready"),
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Error": ERROR,
            "Prediction": PREDICTION,
            "PredictResponse": {
                "type": "object",
                "required": ["model_version", "predictions"],
                "properties": {
                    "model_version": {"type": "string"},
                    "predictions": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Prediction"},
                    },
                },
            },
            "Model": {
                "type": "object",
                "required": ["version", "classes", "input", "metrics"],
                "properties": {
                    "version": {"type": "string"},
                    "classes": {"type": "array", "items": {"type": "string"}},
                    "input": {
                        "type": "object",
                        "properties": {
                            "size": {"type": "integer"},
                            "color_mode": {"type": "string", "enum": ["rgb", "grayscale"]},
                        },
                    },
                    "metrics": {"type": "object"},
                    "created": {"type": "string"},
                    "params_hash": {"type": "string"},
                    "top_k": {"type": "integer"},
                    "unsure_threshold": {"type": "number"},
                },
            },
            "DriftResponse": {
                "type": "object",
                "required": ["model_version", "profile"],
                "properties": {
                    "model_version": {"type": "string"},
                    "profile": {
                        "type": "object",
                        "required": ["total", "labels", "confidence"],
                        "properties": {
                            "total": {"type": "integer"},
                            "labels": {
                                "type": "object",
                                "additionalProperties": {"type": "integer"},
                            },
                            "confidence": {
                                "type": "array",
                                "items": {"type": "integer"},
                                "minItems": 10,
                                "maxItems": 10,
                            },
                        },
                    },
                },
            },
            "InstancesRequest": {
                "type": "object",
                "required": ["instances"],
                "properties": {
                    "instances": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["b64"],
                            "properties": {"b64": {"type": "string", "format": "byte"}},
                        },
                    }
                },
            },
            "InstancesResponse": {
                "type": "object",
                "required": ["predictions"],
                "properties": {
                    "predictions": {
                        "type": "array",
                        "items": {"type": "array", "items": {"type": "number"}},
                    }
                },
            },
            "ModelStatus": {
                "type": "object",
                "required": ["name", "ready", "version"],
                "properties": {
                    "name": {"type": "string"},
                    "ready": {"type": "boolean"},
                    "version": {"type": "string"},
                },
            },
            "Status": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string"},
                    "reason": {"type": "string"},
                    "version": {"type": "string"},
                },
            },
        }
    },
}
