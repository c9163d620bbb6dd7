"""Dataset files: one base (:mod:`.base`: layout tag, attribute codec, atomic writer, lazy reader) and
three layouts on it: grid trajectories (:mod:`.trajectory_file`, PDEBench-compatible), nodal fields on
one mesh (:mod:`.mesh_file`) and particle trajectories (:mod:`.particle_file`)."""
