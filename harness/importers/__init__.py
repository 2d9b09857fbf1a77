"""Your own models: `crossgrad import` and the participant "original".

build.py turns a PyTorch module (torch_graph.py traces it, torch_modules.py maps each
node) or a Keras model (keras_graph.py, keras_layers.py) into a chain of pieces
(pieces.py), and the chain into a spec (spec_text.py) and its weights. original.py runs
the imported model itself in a worker, beside the four (original_torch.py,
original_keras.py), from the same chain. Nothing here imports a framework until asked.
"""
