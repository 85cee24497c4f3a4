"""The HTTP API described: an OpenAPI 3.1 document, and a docs page made from it.

The docs page is plain HTML written here from the same document, with no
script and nothing fetched from elsewhere: the machine serving it may be
offline, and a page of endpoints needs no interactive client.
"""

from __future__ import annotations

import html
from typing import Any

IMAGE_BODY = {
    "description": "One image as the raw body (any image type, or application/octet-stream; "
    'recorded as path "-"), or a multipart/form-data form whose file fields are images '
    "(recorded by their file names; up to 64).",
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
            }
        },
    },
}

TOP_K = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "description": "How many best classes each record lists (default 5).",
    "schema": {"type": "integer", "minimum": 1, "default": 5},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


ERRORS = {
    "400": _error("Malformed request: an empty body, a bad form, an unknown query parameter."),
    "401": _error("Missing or wrong API key (only when the server has one)."),
    "413": _error("The body is over the size limit (refused before it is read whole)."),
    "415": _error("A body type that is not an image (a URL-encoded form, JSON, text)."),
    "422": _error("No image of the request could be read (not an image, over the pixel limit)."),
    "503": _error("The server is stopping."),
    "504": _error("The request took longer than the server's --timeout."),
}

BATCH_HEADER = {
    "X-Cnnkit-Batch": {
        "description": "The largest model call this request's images were computed in "
        "(more than 1: batched with other requests).",
        "schema": {"type": "integer"},
    }
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document of the server (the same for every model)."""
    explain_params = [
        TOP_K,
        _query("method", "gradcam (default), gradcam++ or occlusion (an .onnx: occlusion only).",
               {"type": "string", "enum": ["gradcam", "gradcam++", "occlusion"]}),
        _query("class", "The class to explain (default: the prediction).", {"type": "string"}),
        _query("layer", "The layer for gradcam, as `cnnkit inspect` names them.",
               {"type": "string"}),
        _query("alpha", "Opacity of the heat map (default 0.5).",
               {"type": "number", "minimum": 0, "maximum": 1}),
        _query("annotate", "true (default): the picture `cnnkit explain` writes (small images "
               "enlarged, the class in a band above); false: the overlay at the image's size.",
               {"type": "boolean"}),
    ]  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cnnkit serve",
            "version": version,
            "description": "Classify images with one model; requests arriving together are "
            "batched. Endpoints under /v1/ need the API key when the server has one "
            "(Authorization: Bearer KEY, or X-API-Key: KEY).",
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "summary": "Classify images: the records `cnnkit predict --json` writes",
                    "description": "A raw body answers its record; a form answers "
                    '{"records": [...]}, one per file in order (a file that cannot be read '
                    'gets predict\'s {"path", "error"} record).',
                    "parameters": [TOP_K],
                    "requestBody": IMAGE_BODY,
                    "responses": {
                        "200": {
                            "description": "The record, or the records of a form.",
                            "headers": BATCH_HEADER,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Record"},
                                            {"$ref": "#/components/schemas/Records"},
                                        ]
                                    }
                                }
                            },
                        },
                        **ERRORS,
                    },
                }
            },
            "/v1/explain": {
                "post": {
                    "summary": "Where the network looked: the record and a heat-map overlay",
                    "description": "One image (raw body, or a form with one file). The record "
                    "of /v1/predict, and `explanation`: what `cnnkit explain --json` writes, "
                    "with the overlay as base64 PNG in `overlay_png`.",
                    "parameters": explain_params,
                    "requestBody": IMAGE_BODY,
                    "responses": {
                        "200": {
                            "description": "The explained record.",
                            "content": _json("Explained"),
                        },
                        **ERRORS,
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "The model served: what `cnnkit inspect MODEL --json` prints",
                    "responses": {"200": {"description": "The model's description."}},
                }
            },
            "/v1/stats": {
                "get": {
                    "summary": "Requests answered, model calls, images and batch sizes so far",
                    "responses": {"200": {"description": "Counters since the start."}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Whether the server can answer (open without the API key)",
                    "responses": {
                        "200": {"description": '{"status": "ok"}'},
                        "503": {"description": "The model's thread has stopped."},
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string", "description": "What is wrong."},
                        "hint": {"type": "string", "description": "How to fix it."},
                    },
                },
                "Record": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "label": {"type": "string"},
                        "score": {"type": "number"},
                        "topk": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "label": {"type": "string"},
                                    "score": {"type": "number"},
                                },
                            },
                        },
                        "error": {"type": "string"},
                    },
                },
                "Records": {
                    "type": "object",
                    "properties": {
                        "records": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Record"},
                        }
                    },
                },
                "Explained": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Record"},
                        {
                            "type": "object",
                            "properties": {
                                "explanation": {
                                    "type": "object",
                                    "properties": {
                                        "label": {"type": "string"},
                                        "score": {"type": "number"},
                                        "method": {"type": "string"},
                                        "layer": {"type": ["string", "null"]},
                                        "peak": {"type": "array", "items": {"type": "integer"}},
                                        "overlay_png": {
                                            "type": "string",
                                            "contentEncoding": "base64",
                                            "contentMediaType": "image/png",
                                        },
                                    },
                                }
                            },
                        },
                    ]
                },
            }
        },
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


def docs_page(doc: dict[str, Any]) -> str:
    """A plain HTML page listing the document's endpoints, parameters and answers."""
    e = html.escape
    info = doc["info"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(info['title'])} API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;"
        "padding:0 1rem}code{background:#f3f3f3;padding:0 .2em}h2{margin-top:2rem}"
        "td{padding:.1rem .6rem;vertical-align:top}</style></head><body>",
        f"<h1>{e(info['title'])} <small>{e(info['version'])}</small></h1>",
        f"<p>{e(info['description'])}</p>",
        "<p>The machine-readable description: <a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{e(method.upper())} {e(path)}</code></h2>")
            parts.append(f"<p>{e(op['summary'])}</p>")
            if "description" in op:
                parts.append(f"<p>{e(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                rows = "".join(
                    f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['description'])}</td></tr>"
                    for p in params
                )
                parts.append(f"<p>Query parameters:</p><table>{rows}</table>")
            if "requestBody" in op:
                parts.append(f"<p>Body: {e(op['requestBody']['description'])}</p>")
            rows = "".join(
                f"<tr><td>{e(code)}</td><td>{e(answer['description'])}</td></tr>"
                for code, answer in op["responses"].items()
            )
            parts.append(f"<p>Answers:</p><table>{rows}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
