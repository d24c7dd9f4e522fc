"""Caption quality: recall (entities, nouns, tokens per caption), precision (a modified FaithScore) and
CLIPScore / RefCLIPScore (Captions4T2I section 4, Table 4; FaithScore, Jing et al. 2023; Hessel et al. 2021)."""
