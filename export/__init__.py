"""export/: how a trained Mixer reaches a phone.

`export.convert.convert(source, out_dir, formats)` writes a SavedModel and one verified
`.tflite` per format (export/modes.py) with a report; `export.predict.predict(model, images)`
classifies images with one through the LiteRT interpreter. See README "Export to TFLite".
"""
