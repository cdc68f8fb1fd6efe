"""export/: how a trained Mixer reaches a phone.

`export.pipeline.convert(source, out_dir, formats)` writes a SavedModel and one verified
`.tflite` per format with a report; `export.classify.predict(model, images)` classifies
images with one through the LiteRT interpreter; `export.serving.cpu_serving_function(model)`
serves the model in TensorFlow on a CPU, its weights as constants. See docs/export.md.

    settings.py  ExportSettings: what an export is asked for besides its formats
    formats.py   the formats as data, each row's preparation a function
    inputs.py    the model, run config, class names and images an export reads
    graph.py     the tf_keras twin and the integer-friendly graph, from the one builder
    optimize.py  tensorflow-model-optimization: QAT, pruning, clustering
    pipeline.py  SavedModel and TFLite conversion, and convert(), which applies the rows
    evaluate.py  the LiteRT checks and measurements
    report.py    the report: built per format, written beside the models, as Markdown and a chart
    classify.py  an exported model on image files, as an app runs it
    serving.py   the frozen forward pass, for serving on a CPU from TensorFlow
    convert.py   the command line python -m export.convert
    predict.py   the command line python -m export.predict
"""
