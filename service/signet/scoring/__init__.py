"""Uncertainty and consistency scores: pure numpy/scipy, no web framework, no vLLM, no engine.

Every function takes what an engine can return (log-probabilities, sampled answers,
similarity or entailment matrices, label log-probabilities) and gives numbers; the routes
only gather those inputs. Bad input raises ``ValueError`` with a message meant for the caller.
Entropies and log-probabilities are in nats.

    sequence.py       one answer's logprobs: negative log-likelihood, perplexity, PMI
    entropy.py        token entropy from top-k logprobs, bounded over the unlisted tail
    samples.py        N sampled answers: Monte-Carlo entropy, semantic entropy (weighted, discrete)
    clustering.py     meaning classes by bidirectional entailment; NumSemSets
    lexical.py        ROUGE-L (LCS) between samples: lexical similarity
    laplacian.py      EigValLaplacian of a similarity graph
    decomposition.py  ensemble: total = aleatoric + epistemic
    distances.py      two answer distributions (MQAG): KL, total variation, Hellinger, counting
    selfcheck.py      SelfCheckGPT per-sentence scores: unigram, embedding, yes/no support
    sentences.py      sentence spans of a text
    evaluation.py     AUROC and prediction-rejection ratio of a method on labelled data
    validation.py     shared input checks
"""
