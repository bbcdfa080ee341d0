"""Pipeline classes. Any class here whose name contains `DatasetPipeline` or
`ViewPipeline` is scheduled; see dataflow.pipelines for what each must define."""
