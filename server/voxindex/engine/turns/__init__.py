"""Turn-taking: when a speaker's turn is over.

At each pause of a turn-taking stream (``StreamOptions.turns``) three kinds of evidence meet:
how the speech sounded as it stopped (``acoustic``: Pipecat's Smart Turn v3.2, batched across
streams), what was said (``lexical``: the words of our own reading and the decoder's confidence
in the sentence it closed), and how long the silence has lasted. ``fusion`` makes one
end-of-turn probability of them; ``turn.Turn`` holds one stream's turn and decides with it.
"""
